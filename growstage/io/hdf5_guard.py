"""Refuse risky HDF5 structures from metadata alone, before any data is read.

External storage, external links, virtual datasets and soft links that leave the
file's own tree can make a reader return bytes of *other* files (or crash HDF5 on
a self-referencing virtual dataset). Every HDF5 reader calls :func:`refuse_risky`
right after opening.

>>> import h5py, numpy as np, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "ok.h5")
>>> with h5py.File(p, "w") as f: _ = f.create_dataset("a", data=np.zeros(2))
>>> with h5py.File(p, "r") as f: refuse_risky(f, p)
"""
from __future__ import annotations

import math
import os
import stat

import h5py

from growstage.core.errors import StoreError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def require_regular_file(path: str) -> None:
    """Refuse FIFOs, devices and directories before anything opens them (a FIFO blocks forever)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise StoreError(path, f"cannot stat file ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(path, "not a regular file (FIFO, device or directory): refused")


# A dataset may declare more bytes than its file holds (compression, unwritten chunks); trained
# weights barely compress, so a file declaring more than LARGE_RATIO times its size (and more
# than LARGE_MIN bytes) is a decompression or sparse-file bomb unless the caller says otherwise.
LARGE_RATIO = 10
LARGE_MIN = 64 << 20


def _check_dataset(ds_id, path: str, name: str) -> int:
    """Refuse external storage and virtual layouts; returns the bytes the dataset declares."""
    plist = ds_id.get_create_plist()
    if plist.get_external_count() > 0:
        raise StoreError(path, f"dataset {name!r} uses external storage (reads another file): refused")
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise StoreError(path, f"dataset {name!r} is a virtual dataset (maps other files): refused")
    return math.prod(int(d) for d in (ds_id.shape or ())) * ds_id.dtype.itemsize


def refuse_risky(f: h5py.File, path: str, *, allow_large: bool = False) -> None:
    """Walk every link without following it; raise StoreError on the first risky one.

    Unless ``allow_large``, also refuse a file whose datasets together declare more than
    ``LARGE_RATIO`` times the file's size and more than ``LARGE_MIN`` bytes: reading them
    would allocate memory the file cannot justify.
    """
    try:
        declared = _walk(f, path)
        size = int(f.id.get_filesize())
    except StoreError:
        raise
    except Exception as e:  # a damaged tree: h5py raises KeyError, OSError, RuntimeError, ValueError
        raise StoreError(path, f"damaged HDF5 structure ({type(e).__name__}: {e})") from None
    if not allow_large and declared > max(LARGE_MIN, LARGE_RATIO * size):
        raise StoreError(path, f"its datasets declare {declared:,d} bytes, over {LARGE_RATIO}x the file's {size:,d} "
                               "bytes (compressed or sparse storage): refused to protect memory; if you trust "
                               "this file, pass allow_large=True (--allow-large on the command line)")


def _walk(f: h5py.File, path: str) -> int:
    stack = ["/"]
    declared = 0
    seen = {h5py.h5o.get_info(f.id).addr}  # groups by address: a group hard-linked into itself is a cycle
    while stack:
        gname = stack.pop()
        group = f[gname]
        for key in list(group.keys()):
            full = gname.rstrip("/") + "/" + key
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise StoreError(path, f"{full!r} is an external link to {link.filename}: refused")
            if isinstance(link, h5py.SoftLink):
                target = link.path if link.path.startswith("/") else gname.rstrip("/") + "/" + link.path
                if f.get(target, getlink=True) is None:
                    raise StoreError(path, f"{full!r} is a soft link to {link.path!r}, outside the file's tree: refused")
                continue  # its target is checked through its own hard link; not walked again (no cycles)
            if link is None:
                raise StoreError(path, f"{full!r} is an unknown link type: refused")
            oid = h5py.h5o.open(group.id, key.encode())
            try:
                if isinstance(oid, h5py.h5g.GroupID):
                    addr = h5py.h5o.get_info(oid).addr
                    if addr in seen:
                        raise StoreError(path, f"{full!r} is a group reached twice (a hard-link cycle, or one group "
                                               "linked in two places): refused")
                    seen.add(addr)
                    stack.append(full)
                elif isinstance(oid, h5py.h5d.DatasetID):
                    declared += _check_dataset(oid, path, full)
            finally:
                if hasattr(oid, "close"):
                    oid.close()
    return declared


MAX_INFLATE_RATIO = 1000  # trained weights barely compress; a larger ratio is a decompression bomb


def read_zip_member(z, name: str, path: str, *, chunk: int = 1 << 20) -> bytes:
    """Stream one zip member, stopping at its declared size (a lying header cannot inflate past it).

    >>> import io, zipfile
    >>> b = io.BytesIO()
    >>> with zipfile.ZipFile(b, "w") as z: z.writestr("m", b"abc")
    >>> read_zip_member(zipfile.ZipFile(b), "m", "x.zip")
    b'abc'
    """
    info = z.getinfo(name)
    limit = max(MAX_INFLATE_RATIO * max(info.compress_size, 1), 64 << 20)
    if info.file_size > limit:
        raise StoreError(path, f"member {name!r} declares {info.file_size:,d} bytes from {info.compress_size:,d} "
                               "compressed: a decompression bomb, refused")
    out = bytearray()
    with z.open(info) as fh:
        while True:
            block = fh.read(min(chunk, info.file_size - len(out) + 1))
            if not block:
                break
            out += block
            if len(out) > info.file_size:
                raise StoreError(path, f"member {name!r} inflates past its declared {info.file_size:,d} bytes: refused")
    return bytes(out)
