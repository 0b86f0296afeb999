"""``.npz`` archives, read member by member and never unpickled.

Shapes and dtypes come from each member's ``.npy`` header; an object-dtype
member (a pickle) is refused when the archive is opened.  numpy only.

Example::

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, **{"out/kernel": np.eye(2)})
    >>> r = open_npz(path)
    >>> r["out/kernel"].shape, r.read("out/kernel")[1].tolist()
    ((2, 2), [0.0, 1.0])
"""
from __future__ import annotations

import math
import zipfile
from typing import Any

import numpy as np

from growstage.core.errors import StoreError
from growstage.io.hdf5_guard import MAX_INFLATE_RATIO, require_regular_file
from growstage.io.readers.base import Entry, Reader, is_numeric


def _header(z: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    with z.open(member) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=10000)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=10000)
    return tuple(int(d) for d in shape), dtype


def open_npz(path: str) -> Reader:
    """Open ``path`` lazily; a member ``a/b.npy`` is the tensor ``a/b``."""
    path = str(path)
    require_regular_file(path)
    try:
        z = zipfile.ZipFile(path)
        members = [m for m in z.namelist() if m.endswith(".npy")]
        entries: dict[str, Entry] = {}
        for m in members:
            if m[:-4] in entries:
                z.close()
                raise StoreError(path, f"member {m!r} appears twice in the archive")
            info = z.getinfo(m)
            if info.file_size > max(MAX_INFLATE_RATIO * max(info.compress_size, 1), 64 << 20):
                z.close()
                raise StoreError(path, f"member {m!r} declares {info.file_size:,d} bytes from "
                                       f"{info.compress_size:,d} compressed: a decompression bomb, refused")
            shape, dtype = _header(z, m)
            declared = math.prod(shape) * dtype.itemsize
            if declared > z.getinfo(m).file_size:
                z.close()
                raise StoreError(path, f"member {m!r} declares shape {shape} ({declared:,d} bytes) but holds "
                                       f"{z.getinfo(m).file_size:,d} bytes: damaged or hostile, not read")
            if not is_numeric(dtype):
                z.close()
                raise StoreError(path, f"member {m!r} has dtype {dtype} (a pickled object array); growstage never "
                                       "unpickles: save numeric arrays only")
            entries[m[:-4]] = Entry(shape, dtype, _loader(z, m), source=m)
    except StoreError:
        raise
    except Exception as e:  # BadZipFile, ValueError from a bad header, OSError
        raise StoreError(path, f"damaged or unreadable .npz ({type(e).__name__}: {e})") from None
    return Reader(path, "npz", entries, closer=z.close)


def _loader(z: zipfile.ZipFile, member: str):
    def load(index: Any) -> np.ndarray:
        with z.open(member) as fp:
            arr = np.lib.format.read_array(fp, allow_pickle=False)
        return arr if index is None else arr[index]

    return load
