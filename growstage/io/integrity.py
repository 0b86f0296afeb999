"""Whole-file and structure checksums of growstage HDF5 files (format v2), and a crash-proof check.

Format v2 reserves HDF5's 512-byte *user block* (HDF5 skips it; its signature then sits at
offset 512) for a digest written by plain file I/O after h5py has closed the file:
``GROWSTAGE-DIGEST``, the file's length and the CRC32 of every byte after the user block.
:func:`digest_status` checks it with ``open()`` and ``zlib`` alone, so a damaged file is known
as damaged without HDF5 ever parsing it (HDF5 can crash or spin on a flipped bit).

:func:`structure_crc` covers what the per-tensor data CRCs do not: layer and param names,
split info, roles, dtype, shape, the trainable flag and the metadata.  It is a root attribute,
checked on every load at metadata cost.

:func:`verify_isolated` reads and verifies a file in a child process, for files whose digest
cannot vouch for them (format v1): a crash or a hang there costs the child, not the caller.

numpy and h5py only (h5py only in the child).

Example::

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "f")
    >>> _ = open(p, "wb").write(bytes(USERBLOCK) + b"payload")
    >>> digest_status(p), (write_digest(p), digest_status(p))[1]
    ('absent', 'ok')
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from typing import Iterable

USERBLOCK = 512
_MAGIC = b"GROWSTAGE-DIGEST"
_HEAD = struct.Struct("<16sQI")  # magic, file length, CRC32 of bytes [USERBLOCK:]
_CHUNK = 1 << 22


def _crc_after_userblock(fp) -> tuple[int, int]:
    fp.seek(USERBLOCK)
    crc, n = 0, USERBLOCK
    while True:
        block = fp.read(_CHUNK)
        if not block:
            return crc & 0xFFFFFFFF, n
        crc = zlib.crc32(block, crc)
        n += len(block)


def write_digest(path: str) -> None:
    """Write the whole-file digest into the (zeroed) user block of a just-closed file."""
    with open(path, "rb+") as fp:
        crc, length = _crc_after_userblock(fp)
        fp.seek(0)
        fp.write(_HEAD.pack(_MAGIC, length, crc))
        fp.flush()


def digest_status(path: str, *, full: bool = True) -> str:
    """``ok``, ``absent`` (no digest: a format v1 or foreign file) or ``mismatch: <why>``; plain I/O only.

    ``full=False`` checks the header and the file's length only (constant time).
    """
    with open(path, "rb") as fp:
        head = fp.read(_HEAD.size)
        if len(head) < _HEAD.size or not head.startswith(_MAGIC):
            return "absent"
        _, length, crc = _HEAD.unpack(head)
        actual = os.fstat(fp.fileno()).st_size
        if actual != length:
            return f"mismatch: the file has {actual:,d} bytes, its digest says {length:,d} (truncated or appended to)"
        if full and _crc_after_userblock(fp)[0] != crc:
            return "mismatch: whole-file checksum differs (bytes changed after writing)"
    return "ok"


def structure_crc(meta_json: str, entries: Iterable[tuple]) -> int:
    """CRC32 over the metadata string and ``(layer, param, split_json, roles_json, dtype, shape, trainable,
    data_crc)`` of every tensor, in sorted order (a reordered file is the same file).

    >>> structure_crc("{}", [("a", "k", "null", "null", "<f4", (2,), True, 7)]) == structure_crc("{}", [])
    False
    """
    rows = sorted([str(l), str(p), str(s), str(r), str(d), [int(x) for x in shape], bool(t), int(c)]
                  for l, p, s, r, d, shape, t, c in entries)
    return zlib.crc32(json.dumps([meta_json, rows]).encode("utf-8")) & 0xFFFFFFFF


_CHILD = ("import sys\n"
          "from growstage.io.store import load\n"
          "from growstage.io.checkpoint_dir import verify\n"
          "try:\n"
          "    with load(sys.argv[1]) as s:\n"
          "        verify(s)\n"
          "except Exception as e:\n"
          "    print(f'{type(e).__name__}: {e}'.splitlines()[0][-300:], file=sys.stderr)\n"
          "    sys.exit(3)\n")


def verify_isolated(path: str, *, timeout: float | None = None) -> str | None:
    """Load and verify ``path`` in a child Python; None when it is sound, else why not.

    A segfault, an abort or a hang (past ``timeout``, by default 30 s plus 1 s per 20 MB) in HDF5
    ends the child only.

    >>> import numpy as np, tempfile
    >>> from growstage.io.store import save
    >>> p = str(save({"l": {"w": np.ones(2)}}, os.path.join(tempfile.mkdtemp(), "s.h5")))
    >>> verify_isolated(p) is None, verify_isolated(p + ".missing").endswith("s.h5.missing: no such file")
    (True, True)
    """
    if timeout is None:
        try:
            timeout = 30.0 + os.path.getsize(path) / 20e6
        except OSError:  # gone or unreadable: the child says why
            timeout = 30.0
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, path], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"reading it did not finish within {timeout:.0f} s (a hang inside HDF5)"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return f"reading it crashed the reading process ({name})"
    lines = [l for l in done.stderr.strip().splitlines() if l.strip()]
    return lines[-1] if lines else f"the verifying process exited with status {done.returncode}"
