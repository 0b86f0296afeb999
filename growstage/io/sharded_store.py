"""Sharded snapshots: a folder with one safetensors file per device and a JSON index.

Layout of ``path/``::

    index.json                      format "growstage-sharded", version, meta, complete, structure_crc32,
                                    per param: layer, param, split, roles, trainable, dtype, shape and
                                    its blocks (file, key, start/stop per axis, crc32, byte count)
    device-00003.safetensors        the blocks device 3 held (each distinct shard once: replicas left out)
    host.safetensors                values that lived in host memory (numpy)

Each device's blocks are copied from that device and written by themselves: nothing is gathered.  The
folder is written under a temporary name beside ``path``, every file fsynced, the index last, then
renamed: it is complete or absent.  A reader checks the index's structure checksum and, per block it
reads, the block's CRC32; :meth:`ShardedArray.read_region` reads only the blocks that overlap the
region asked for (a device on another mesh reads only what its shard needs).  safetensors cannot run
code; the index is JSON.

numpy, json and safetensors only: no framework import here.

Example::

    >>> import numpy as np, tempfile, os
    >>> from growstage.core.values import Snapshot, Param
    >>> path = os.path.join(tempfile.mkdtemp(), "snap")
    >>> _ = save_sharded(Snapshot({"out": {"kernel": Param(np.eye(4, dtype="f4"))}}, meta={"epoch": 3}), path)
    >>> with load_sharded(path) as snap:
    ...     print(snap.meta["epoch"], snap["out"]["kernel"].value.read_region(((1, 2), (0, 4))).tolist())
    3 [[0.0, 1.0, 0.0, 0.0]]
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from growstage.core.errors import StoreError
from growstage.core.values import Param, Snapshot, as_snapshot
from growstage.io.integrity import structure_crc
from growstage.io.optional import require
from growstage.io.sharded_checks import (RAW_DTYPES, ST_DTYPES, check_entry, regular_file, replaceable,
                                        stored_matches)

FORMAT = "growstage-sharded"
FORMAT_VERSION = 1
INDEX = "index.json"
TMP_PREFIX = ".growstage-tmp-"

Bounds = tuple[tuple[int, int], ...]


def is_sharded_snapshot(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a sharded snapshot's index (a link or FIFO there too: the
    reader refuses it with its reason, rather than another format's reader guessing)."""
    return os.path.isdir(path) and os.path.lexists(os.path.join(path, INDEX))


def _is_index(path: str) -> bool:
    """Whether ``path`` is a plain file holding a growstage sharded index (not another tool's index.json)."""
    try:
        if not os.path.isfile(path) or os.path.islink(path):
            return False
        with open(path) as fh:
            return json.load(fh).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _blocks_of(value: Any, shape: tuple[int, ...]) -> list[tuple[Bounds, str, Callable[[], np.ndarray]]]:
    """``(bounds, file, read)`` per distinct block: a device array's shards, or the whole host value."""
    if hasattr(value, "shards"):
        return [(b, f"device-{dev:05d}", read) for b, dev, read in value.shards()]
    whole = tuple((0, d) for d in shape)
    return [(whole, "host", lambda v=value: np.asarray(v.read() if hasattr(v, "read") else v))]


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _crc(arr: np.ndarray) -> int:
    from growstage.io.store import crc32

    return crc32(arr)


def _stored(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.name in ST_DTYPES:
        return arr, False
    return arr.reshape(-1).view(np.uint8), True  # bfloat16 and friends: their bytes, dtype in the index


def _write_files(snap: Snapshot, tmp: str, out: str) -> tuple[list[dict], list[tuple]]:
    """Every block into its device's file, one file at a time (a device's blocks only in memory)."""
    save_file = require("safetensors.numpy", "a sharded snapshot").save_file

    entries, per_file = [], {}
    for lname, params in snap.layers.items():
        for pname, prm in params.items():
            shape, dtype = tuple(int(d) for d in prm.shape), np.dtype(prm.dtype)
            if dtype.name not in ST_DTYPES and dtype.name not in RAW_DTYPES:  # what the reader accepts
                raise StoreError(out, f"param {lname}/{pname} has dtype {dtype}; a sharded snapshot stores "
                                      f"{', '.join(sorted(ST_DTYPES) + sorted(RAW_DTYPES))}")
            e = {"layer": lname, "param": pname, "split": prm.split, "trainable": bool(prm.trainable),
                 "roles": list(prm.roles) if prm.roles is not None else None, "dtype": dtype.name,
                 "shape": list(shape), "blocks": []}
            for bounds, fname, read in _blocks_of(prm.value, shape):
                key = f"p{len(entries)}b{len(e['blocks'])}"
                e["blocks"].append({"file": fname + ".safetensors", "key": key, "bounds": [list(b) for b in bounds]})
                per_file.setdefault(fname, []).append((e["blocks"][-1], read))
            entries.append(e)
    for fname, blocks in per_file.items():
        tensors = {}
        for block, read in blocks:
            arr = np.asarray(read())
            block["crc32"], block["nbytes"] = _crc(arr), int(arr.nbytes)
            tensors[block["key"]], block["raw"] = _stored(arr)
        path = os.path.join(tmp, fname + ".safetensors")
        save_file(tensors, path)
        _fsync(path)
        del tensors
    rows = [_row(e) for e in entries]
    return entries, rows


def _row(e: dict) -> tuple:
    blocks = json.dumps([[b["file"], b["key"], b["bounds"], b.get("crc32"), b.get("raw")] for b in e["blocks"]])
    return (e["layer"], e["param"], json.dumps(e["split"]), json.dumps(e["roles"]), e["dtype"] + blocks,
            tuple(e["shape"]), e["trainable"], 0)


def save_sharded(snapshot: Any, path: str | os.PathLike, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``snapshot`` as a sharded folder at ``path`` atomically (see the module doc).

    A folder already at ``path`` is replaced only if it is a sharded snapshot itself and holds nothing
    else; a ``path`` inside a folder the snapshot reads from is refused.
    """
    from growstage.io.outputs import snapshot_inputs
    from growstage.io.store import _jsonable_meta

    snap = as_snapshot(snapshot)
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise StoreError(repr(path), "not an output path; give a folder name")
    path = Path(path)
    if os.path.lexists(path):
        replaceable(str(path), _is_index)
    if not path.parent.is_dir():
        raise StoreError(str(path), f"its folder {path.parent} does not exist: create it first")
    real = os.path.realpath(path)
    for src in snapshot_inputs(snap):
        if os.path.isdir(src) and real.startswith(os.path.realpath(src).rstrip(os.sep) + os.sep):
            raise StoreError(str(path), f"lies inside the input folder {src}: writing there would change what is "
                                        "read; give another output path (nothing was written)")
    all_meta = {**snap.meta, **(meta or {})}
    meta_json = _jsonable_meta(all_meta)
    parent = str(path.parent) or "."
    tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=parent)
    try:
        entries, rows = _write_files(snap, tmp, str(path))
        index = {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "meta": meta_json,
                 "structure_crc32": structure_crc(meta_json, rows), "params": entries}
        with open(os.path.join(tmp, INDEX), "w") as fh:
            json.dump(index, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync(tmp)
        _swap_in(tmp, path, parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    import ctypes
    import errno

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a libc without it
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel, or a file system without it
        return False
    raise OSError(err, os.strerror(err), b)


def _swap_in(tmp: str, path: Path, parent: str) -> None:
    """Put the finished folder ``tmp`` at ``path``; an older snapshot there is swapped out in one step
    where the system can (never a moment without a snapshot at ``path``), else moved aside first."""
    old = None
    if os.path.lexists(path) and _exchange(tmp, str(path)):
        old = tmp  # now the older snapshot (or the link that pointed at one)
    else:
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
    _fsync(parent)
    if old is not None and os.path.islink(old):  # the path was a link to a snapshot: the link goes, not its target
        os.unlink(old)
    elif old is not None:
        shutil.rmtree(old, ignore_errors=True)


class ShardedArray:
    """One param of a sharded snapshot, read on demand: whole (:meth:`read`) or a region."""

    def __init__(self, folder: str, entry: dict, files: "_Files"):
        self._folder, self._entry, self._files = folder, entry, files
        self.shape = tuple(int(d) for d in entry["shape"])
        self.dtype = _dtype(entry["dtype"])
        self._label = f"{entry['layer']}/{entry['param']}"

    def _block(self, b: dict, f: Any) -> np.ndarray:
        """Block ``b`` from its open file ``f``, whose header :meth:`_checked` has already checked."""
        block_shape = tuple(int(x[1]) - int(x[0]) for x in b["bounds"])
        try:
            arr = f.get_tensor(b["key"])
        except Exception as e:  # safetensors raises its own error types on damage
            raise StoreError(self._folder, f"cannot read param {self._label} from {b['file']}: {e}") from None
        if _crc(arr) != int(b["crc32"]):
            raise StoreError(self._folder, f"checksum mismatch in param {self._label} ({b['file']}): damaged")
        if b.get("raw"):
            arr = arr.view(self.dtype)
        if arr.size != math.prod(block_shape):
            raise StoreError(self._folder, f"block of {self._label} in {b['file']} has the wrong size: damaged")
        return arr.reshape(block_shape).astype(self.dtype, copy=False)

    def _checked(self, b: dict, block_shape: tuple[int, ...]) -> Any:
        """The open file of block ``b``, its stored tensor's dtype and shape checked (header only)."""
        try:
            f = self._files.get(b["file"])
            header = f.get_slice(b["key"])
        except StoreError:
            raise
        except Exception as e:  # safetensors raises its own error types on damage
            raise StoreError(self._folder, f"cannot read param {self._label} from {b['file']}: {e}") from None
        stored_matches(self._folder, self._label, b, self._entry["dtype"], block_shape, header)
        return f

    def read_region(self, bounds: Bounds) -> np.ndarray:
        """The entries ``[start, stop)`` per axis; only the blocks that overlap them are read."""
        bounds = tuple((int(a), int(b)) for a, b in bounds)
        if len(bounds) != len(self.shape) or any(not 0 <= a <= z <= d for (a, z), d in zip(bounds, self.shape)):
            raise StoreError(self._folder, f"region {bounds} is not inside {self._label}'s shape {self.shape}")
        todo = []
        for b in self._entry["blocks"]:
            inter = [(max(a, int(x[0])), min(z, int(x[1]))) for (a, z), x in zip(bounds, b["bounds"])]
            if any(lo >= hi for lo, hi in inter) and math.prod(z - a for a, z in bounds):
                continue
            # every header before the allocation: a shape the files do not back never reaches np.empty
            todo.append((b, inter, self._checked(b, tuple(int(x[1]) - int(x[0]) for x in b["bounds"]))))
        out = np.empty(tuple(b - a for a, b in bounds), self.dtype)
        covered = 0
        for b, inter, f in todo:
            block = self._block(b, f)
            src = tuple(slice(lo - int(x[0]), hi - int(x[0])) for (lo, hi), x in zip(inter, b["bounds"]))
            dst = tuple(slice(lo - a, hi - a) for (lo, hi), (a, _) in zip(inter, bounds))
            out[dst] = block[src]
            covered += math.prod(max(0, hi - lo) for lo, hi in inter)
        if covered != out.size:
            raise StoreError(self._folder, f"the blocks of {self._label} do not cover {bounds}: damaged index")
        return out

    def read(self) -> np.ndarray:
        return self.read_region(tuple((0, d) for d in self.shape))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype)


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _Files:
    """Open safetensors files of one folder (opened on first use, names checked against the folder)."""

    def __init__(self, folder: str):
        self.folder, self.open = folder, {}

    def get(self, name: str) -> Any:
        safe_open = require("safetensors", "a sharded snapshot").safe_open

        if name not in self.open:  # a plain file in the folder: no link out of it, no FIFO to block on
            self.open[name] = safe_open(regular_file(self.folder, name, "shard file"), framework="np")
        return self.open[name]

    def close(self) -> None:
        self.open.clear()


def load_sharded(path: str | os.PathLike) -> Snapshot:
    """Open a sharded snapshot folder; params are :class:`ShardedArray` values read on demand."""
    folder = os.fspath(path)
    index_path = regular_file(folder, INDEX, "index")  # a link out of the folder or a FIFO: refused, not read
    try:
        with open(index_path) as fh:
            index = json.load(fh)
    except (OSError, ValueError, RecursionError) as e:
        raise StoreError(folder, f"no readable {INDEX} ({type(e).__name__}: {e}): not a complete sharded snapshot")
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise StoreError(folder, f"{INDEX} is not a growstage sharded snapshot index")
    if index.get("format_version") != FORMAT_VERSION:
        raise StoreError(folder, f"format version {index.get('format_version')!r} is not supported "
                                 f"(this growstage reads {FORMAT_VERSION})")
    if index.get("complete") is not True:
        raise StoreError(folder, "snapshot is incomplete (its writer did not finish)")
    try:
        meta_json, entries = str(index["meta"]), list(index["params"])
        meta = json.loads(meta_json)
        ok = int(index["structure_crc32"]) == structure_crc(meta_json, [_row(e) for e in entries])
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(folder, f"damaged index ({type(e).__name__}: {e})") from None
    if not ok:
        raise StoreError(folder, "names, split info, roles, dtypes, shapes, blocks or metadata differ from what "
                                 "was written (structure checksum mismatch): damaged or edited")
    if not isinstance(meta, dict):
        raise StoreError(folder, f"its metadata is a {type(meta).__name__}, not a JSON object: damaged or edited")
    seen: set = set()
    shard_files: set = set()
    for e in entries:  # before anything is read or allocated: a recomputed CRC proves nothing
        check_entry(folder, e, seen, shard_files)
    files = _Files(folder)
    layers: dict[str, dict[str, Param]] = {}
    for e in entries:
        roles = tuple(e["roles"]) if e["roles"] is not None else None
        layers.setdefault(e["layer"], {})[e["param"]] = Param(ShardedArray(folder, e, files), split=e["split"],
                                                              roles=roles, trainable=bool(e["trainable"]))
    return Snapshot(layers, meta=meta, path=folder, closer=files.close)
