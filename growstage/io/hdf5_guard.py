"""Refuse risky HDF5 structures from metadata alone, before any data is read.

External storage, external links, virtual datasets and soft links that leave the
file's own tree can make a reader return bytes of *other* files (or crash HDF5 on
a self-referencing virtual dataset). A global heap collection (where HDF5 keeps every
variable-length string, attributes included) holding an object of size 0 makes HDF5 1.14
loop forever when it first reads a string from it: :func:`refuse_bad_heaps` walks the
collections with plain file I/O first. Every HDF5 reader calls :func:`refuse_risky`
right after opening.

>>> import h5py, numpy as np, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "ok.h5")
>>> with h5py.File(p, "w") as f: _ = f.create_dataset("a", data=np.zeros(2))
>>> with h5py.File(p, "r") as f: refuse_risky(f, p)
"""
from __future__ import annotations

import math
import mmap
import os
import stat
from typing import Any

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


def refuse_risky(f: h5py.File, path: str, *, allow_large: bool = False, source: Any = None) -> None:
    """Walk every link without following it; raise StoreError on the first risky one.

    Unless ``allow_large``, also refuse a file whose datasets together declare more than
    ``LARGE_RATIO`` times the file's size and more than ``LARGE_MIN`` bytes: reading them
    would allocate memory the file cannot justify.  ``source``: the file's bytes (or a
    ``BytesIO``) when ``f`` was not opened from ``path`` itself (the HDF5 inside a ``.keras``);
    its global heaps are checked (:func:`refuse_bad_heaps`) before HDF5 reads any string.
    """
    refuse_bad_heaps(path if source is None else source, path)
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


_GCOL = b"GCOL\x01"  # a global heap collection, version 1 (the only one HDF5 parses)


def _length_size(buf: Any) -> int:
    """The superblock's "size of lengths" (8 unless the file says otherwise)."""
    offset = 0
    while offset + 16 <= len(buf):
        if bytes(buf[offset:offset + 8]) == HDF5_SIGNATURE:
            size = buf[offset + 14] if buf[offset + 8] < 2 else buf[offset + 10]  # superblock v0/1 vs v2/3
            return size if size in (2, 4, 8, 16) else 8
        offset = 512 if offset == 0 else offset * 2
    return 8


def _check_heaps(buf: Any, path: str) -> None:
    n = _length_size(buf)
    objhdr = 8 + n  # index, reference count, reserved, size; a collection's header has the same length
    budget = len(buf) // objhdr + 64  # a sound file's collections do not overlap: fewer objects than this
    at = buf.find(_GCOL)
    while at >= 0:
        end = at + int.from_bytes(buf[at + 8:at + 8 + n], "little")
        p = at + objhdr
        while p + objhdr <= end:  # HDF5 takes a shorter tail as free space
            index = int.from_bytes(buf[p:p + 2], "little")
            size = int.from_bytes(buf[p + 8:p + 8 + n], "little")
            # an object's storage is its header plus its size padded to 8; the free-space object (index 0)
            # counts its header in its size: a smaller one is what HDF5 never writes and loops on
            need = objhdr + (size + 7) // 8 * 8 if index else size
            budget -= 1
            if need < objhdr or p + need > end or end > len(buf) or budget < 0:
                raise StoreError(path, f"global heap at byte {at}: object at byte {p} has an impossible size "
                                       f"({size}): a damaged or crafted file (HDF5 would loop on it), refused")
            p += need
        at = buf.find(_GCOL, at + 1)


def refuse_bad_heaps(source: Any, path: str) -> None:
    """Refuse a global heap collection that HDF5 would walk forever or past its end; plain file I/O.

    ``source``: a path, bytes or a ``BytesIO``.  Every ``GCOL`` signature in the file is walked as
    HDF5 walks one (a string attribute's bytes can point anywhere), so a crafted collection is found
    wherever it sits.

    >>> refuse_bad_heaps(b"GCOL" + bytes([1, 0, 0, 0]) + (32).to_bytes(8, "little") + bytes(16), "x.h5")
    Traceback (most recent call last):
    growstage.core.errors.StoreError: x.h5: global heap at byte 0: object at byte 16 has an impossible size (0): a damaged or crafted file (HDF5 would loop on it), refused
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _check_heaps(source, path)
    if hasattr(source, "getbuffer"):
        with source.getbuffer() as view:
            return _check_heaps(bytes(view), path)
    with open(source, "rb") as fp:
        if os.fstat(fp.fileno()).st_size == 0:
            return None
        with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _check_heaps(buf, path)


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
