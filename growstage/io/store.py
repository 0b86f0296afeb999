"""growstage HDF5 snapshots: atomic writes, checksummed and lazily read.

Layout: root attributes ``format="growstage"``, ``format_version``,
``meta`` (JSON) and ``complete``; group ``params/<layer>/<param>`` holds one
dataset per param (names percent-quoted, so ``/`` inside a name stays a
name), with attributes ``name``, ``split`` and ``roles`` (JSON) and
``crc32``.  Format v2 adds ``structure_crc32`` (a root attribute over every
name, split info, roles, dtype, shape and the metadata, checked on every load)
and a whole-file digest in HDF5's 512-byte user block (:mod:`growstage.io.integrity`;
``latest_checkpoint`` checks it before HDF5 parses the file).  v1 files still load,
with a note that their names and metadata are not checksummed.  A file is written
under a temporary name in the target's directory, flushed, fsynced and renamed,
so it is complete or absent.  Nothing is unpickled: only numeric datasets and
JSON strings are read.

numpy and h5py only: no framework import here.

Example::

    >>> import numpy as np, tempfile, os
    >>> from growstage.core.values import Snapshot, Param
    >>> path = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> _ = save(Snapshot({"out": {"kernel": Param(np.eye(2, dtype="f4"))}}, meta={"epoch": 3}), path)
    >>> with load(path) as snap:
    ...     print(snap.meta["epoch"], snap["out"]["kernel"].read()[0])
    3 [1. 0.]
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import h5py
import numpy as np

from growstage.core.errors import StoreError
from growstage.io.hdf5_guard import refuse_risky, require_regular_file
from growstage.io.integrity import USERBLOCK, digest_status, structure_crc, write_digest
from growstage.io.outputs import check_output, snapshot_inputs
from growstage.core.values import Param, Snapshot, as_snapshot

FORMAT = "growstage"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
V1_NOTE = "format v1: names, split info, roles and metadata are not checksummed (only the data); re-save to upgrade"
TMP_PREFIX = ".growstage-tmp-"
_ALLOWED_KINDS = "biuf"  # bool, int, uint, float: never object / string / void


def _q(name: str) -> str:
    # "(root)" cannot be the quoted form of any name: quote() escapes parentheses
    return quote(name, safe="") or "(root)"


def crc32(arr: np.ndarray) -> int:
    """CRC32 of the array's bytes in C order."""
    # tobytes() also handles zero-size arrays (memoryview.cast refuses zeros in the shape)
    return zlib.crc32(np.ascontiguousarray(arr).tobytes()) & 0xFFFFFFFF


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable_meta(meta: dict[str, Any]) -> str:
    clean = {k: v for k, v in meta.items() if not k.startswith("_")}
    try:
        return json.dumps(clean, sort_keys=True)
    except TypeError as e:
        raise StoreError("<meta>", f"snapshot metadata must be JSON-serialisable: {e}") from None


def _write_params(f: h5py.File, snap: Snapshot, path: Path) -> list[tuple]:
    """Every param as a dataset; returns the rows that :func:`structure_crc` covers."""
    rows = []
    root = f.create_group("params", track_order=True)
    for lname, params in snap.layers.items():
        g = root.create_group(_q(lname), track_order=True)
        g.attrs["name"] = lname
        for pname, prm in params.items():
            arr = np.asarray(prm.read())
            if not arr.flags.c_contiguous:  # ascontiguousarray would turn 0-d into 1-d
                arr = np.ascontiguousarray(arr)
            if arr.dtype.kind not in _ALLOWED_KINDS:
                raise StoreError(path, f"param {lname}/{pname} has dtype {arr.dtype}; only numeric arrays are stored")
            ds = g.create_dataset(_q(pname), data=arr)
            row = (lname, pname, json.dumps(prm.split), json.dumps(list(prm.roles) if prm.roles is not None else None),
                   ds.dtype.str, arr.shape, bool(prm.trainable), crc32(arr))
            ds.attrs["name"], ds.attrs["split"], ds.attrs["roles"] = pname, row[2], row[3]
            ds.attrs["trainable"], ds.attrs["crc32"] = row[6], row[7]
            rows.append(row)
    return rows


def save(snapshot: Any, path: str | os.PathLike, *, meta: dict[str, Any] | None = None,
         sharded: bool = False) -> Path:
    """Write ``snapshot`` (a Snapshot or plain values dict) to ``path`` atomically.

    Extra ``meta`` entries (stage, epoch, ...) are merged into the snapshot's.
    Returns the final path.  An existing ``path`` that is not a regular file (FIFO, device,
    folder) or that the snapshot is read from is refused before anything is written
    (:func:`growstage.io.outputs.check_output`).  ``sharded=True``: a folder, each device's shards
    written from that device, nothing gathered (:mod:`growstage.io.sharded_store`; a live model's
    snapshot needs JAX).
    """
    if sharded:
        from growstage.io.sharded_store import save_sharded

        return save_sharded(snapshot, path, meta=meta)
    snap = as_snapshot(snapshot)
    # never over a FIFO/device/folder, nor over the file this snapshot still reads from
    path = Path(check_output(path, snapshot_inputs(snap), suffix_hint=".h5"))
    directory = str(path.parent) or "."
    all_meta = dict(snap.meta)
    all_meta.update(meta or {})
    meta_json = _jsonable_meta(all_meta)
    # The writer's pid in the name lets a later cleanup tell a dead writer's
    # leftovers from a live concurrent writer's file.
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".h5", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=True, userblock_size=USERBLOCK) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["meta"] = meta_json
            f.attrs["complete"] = False
            rows = _write_params(f, snap, path)
            f.attrs["structure_crc32"] = structure_crc(meta_json, rows)
            f.attrs["complete"] = True
            f.flush()
        write_digest(tmp)  # after h5py closed the file: the digest covers its final bytes
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class LazyArray:
    """A dataset of an open snapshot file, read and verified on demand."""

    __slots__ = ("_file", "_key", "shape", "dtype", "_crc", "_path", "_label")

    def __init__(self, file: h5py.File, key: str, ds: h5py.Dataset, path: str, label: str):
        self._file, self._key, self._path, self._label = file, key, path, label
        self.shape = tuple(int(d) for d in ds.shape)
        self.dtype = ds.dtype
        self._crc = int(ds.attrs.get("crc32", -1))

    def read(self) -> np.ndarray:
        try:
            ds = self._file[self._key]
            check_storage(ds, self._path, self._label, compressed=False)
            arr = np.empty(self.shape, dtype=self.dtype)
            if arr.size:
                ds.read_direct(arr)
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise StoreError(self._path, f"cannot read param {self._label}: {e}") from None
        if crc32(arr) != self._crc:
            raise StoreError(self._path, f"checksum mismatch in param {self._label}: the file is damaged")
        return arr

    def __array__(self, dtype=None, copy=None):
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype)


def check_storage(ds: h5py.Dataset, path: str, label: str, *, compressed: bool = True) -> None:
    """Refuse a dataset whose declared size its file cannot hold, before allocating for it.

    growstage never compresses, so its datasets must store every byte they declare; other
    writers may compress, which is allowed up to a factor of 1000.
    """
    declared = math.prod(int(d) for d in ds.shape) * ds.dtype.itemsize
    if declared <= 1 << 16:
        return
    stored = int(ds.id.get_storage_size())
    limit = stored * (1000 if compressed else 1)
    if declared > limit:
        raise StoreError(path, f"tensor {label} declares shape {tuple(ds.shape)} ({declared:,d} bytes) but the file "
                               f"stores {stored:,d} bytes for it: damaged or hostile, not read")


def _raw_attr(obj, key: str, default: str = "null") -> str:
    raw = obj.attrs.get(key, default)
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def _json_attr(obj, key: str, path: str, label: str):
    try:
        return json.loads(_raw_attr(obj, key))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        raise StoreError(path, f"attribute {key!r} of {label} is not valid JSON") from None


def _split_roles(ds, path: str, label: str) -> tuple[Any, Any]:
    """The split info and roles of a dataset, type-checked: a hand-edited string must not reach the planner."""
    split, roles = _json_attr(ds, "split", path, label), _json_attr(ds, "roles", path, label)
    check_split_roles(split, roles, len(ds.shape), path, label)
    return split, tuple(roles) if roles is not None else None


def check_split_roles(split: Any, roles: Any, ndim: int, path: str, label: str) -> None:
    """Refuse split info or roles that are not one list per axis (shared with the sharded reader)."""
    ok_split = split is None or (isinstance(split, list) and len(split) == ndim and all(
        isinstance(a, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in a) for a in split))
    if not ok_split:
        raise StoreError(path, f"split info of {label} is {split!r}, not one list of block sizes per axis "
                               f"({ndim} axes): damaged or hand-edited")
    if roles is not None and not (isinstance(roles, list) and len(roles) == ndim and all(isinstance(r, str) for r in roles)):
        raise StoreError(path, f"roles of {label} are {roles!r}, not one name per axis: damaged or hand-edited")


def _read_layers(f: h5py.File, path: str) -> tuple[dict[str, dict[str, Param]], list[tuple]]:
    layers: dict[str, dict[str, Param]] = {}
    rows = []
    for gkey, g in f["params"].items():
        if not isinstance(g, h5py.Group):
            raise StoreError(path, f"params/{gkey} is not a group: damaged or hand-edited file")
        lname = _raw_attr(g, "name", unquote(gkey))
        if lname in layers:
            raise StoreError(path, f"layer name {lname!r} appears twice: damaged or hand-edited file")
        params: dict[str, Param] = {}
        for dkey, ds in g.items():
            if not isinstance(ds, h5py.Dataset):
                raise StoreError(path, f"params/{gkey}/{dkey} is not a dataset: damaged or hand-edited file")
            pname = _raw_attr(ds, "name", unquote(dkey))
            label = f"{lname}/{pname}"
            if pname in params:
                raise StoreError(path, f"param name {label!r} appears twice: damaged or hand-edited file")
            if ds.dtype.kind not in _ALLOWED_KINDS:
                raise StoreError(path, f"param {label} is not a numeric dataset")
            split, roles = _split_roles(ds, path, label)
            trainable = bool(ds.attrs.get("trainable", True))
            lazy = LazyArray(f, f"params/{gkey}/{dkey}", ds, path, label)
            params[pname] = Param(lazy, split=split, roles=roles, trainable=trainable)
            rows.append((lname, pname, _raw_attr(ds, "split"), _raw_attr(ds, "roles"), ds.dtype.str, lazy.shape,
                         trainable, lazy._crc))
        layers[lname] = params
    return layers, rows


def _header(f: h5py.File, path: str) -> tuple[int, str, dict]:
    """``(format version, raw meta JSON, meta)``, refusing what is not a complete growstage file."""
    if f.attrs.get("format") != FORMAT:
        raise StoreError(path, "not a growstage snapshot (missing format attribute); to read Keras or TF files use the checkpoint readers")
    version = f.attrs.get("format_version", -1)
    if not isinstance(version, (int, np.integer)) or int(version) not in _READABLE_VERSIONS:
        raise StoreError(path, f"format version {version!r} is not supported (this growstage reads "
                               f"{', '.join(map(str, _READABLE_VERSIONS))}); a newer growstage wrote it, or it is damaged")
    if not bool(f.attrs.get("complete", False)):
        raise StoreError(path, "snapshot is incomplete (its writer did not finish)")
    meta_json = _raw_attr(f, "meta")
    meta = _json_attr(f, "meta", path, "the file")
    if not isinstance(meta, dict):
        raise StoreError(path, "metadata is not a JSON object")
    return int(version), meta_json, meta


def load(path: str | os.PathLike, *, allow_large: bool = False) -> Snapshot:
    """Open a growstage snapshot, an HDF5 file or a sharded folder; params are read lazily via ``Param.read()``.

    A sharded folder (``save(..., sharded=True)``) is read through
    :func:`growstage.io.sharded_store.load_sharded`: its index checked before any block is read.

    The returned snapshot holds the file open until ``close()`` (or use it as a
    context manager).  A format v2 file whose names, split info, roles or metadata
    were changed after writing is refused; a v1 file loads with a note saying they
    are not checksummed.  ``allow_large``: accept datasets that declare far more
    bytes than the file holds (see :func:`growstage.io.hdf5_guard.refuse_risky`).
    """
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise StoreError("''", "an empty path; give a growstage snapshot file")
    path = str(path)
    if not os.path.exists(path):
        raise StoreError(path, "no such file")
    from growstage.io.sharded_store import is_sharded_snapshot, load_sharded

    if is_sharded_snapshot(path):
        return load_sharded(path)
    if os.path.isdir(path):
        raise StoreError(path, "a folder without index.json: not a sharded growstage snapshot (a copy that "
                               "missed it?); give a snapshot file or folder (for a fit checkpoint_dir, its "
                               "epoch-NNNN folder or file)")
    require_regular_file(path)
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # OSError, ValueError, RuntimeError from a damaged superblock
        raise StoreError(path, f"not a readable HDF5 file ({type(e).__name__}: {e})") from None
    try:
        refuse_risky(f, path, allow_large=allow_large)
        version, meta_json, meta = _header(f, path)
        layers, rows = _read_layers(f, path)
        notes = []
        if version == 1:
            notes.append(V1_NOTE)
        elif digest_status(path, full=False) != "ok":  # the header only: a full pass would undo lazy reading
            raise StoreError(path, "its whole-file digest (the first bytes of a format v2 file) is missing or does "
                                   "not match the file's length: damaged, truncated or appended to")
        elif int(f.attrs.get("structure_crc32", -1)) != structure_crc(meta_json, rows):
            raise StoreError(path, "names, split info, roles, dtypes, shapes or metadata differ from what was written "
                                   "(structure checksum mismatch): the file is damaged or was edited")
    except StoreError:
        f.close()
        raise
    except Exception as e:  # h5py and json raise many types on a damaged file
        f.close()
        raise StoreError(path, f"damaged snapshot ({type(e).__name__}: {e})") from None
    return Snapshot(layers, meta=meta, notes=notes, path=path, closer=f.close)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(directory: str | os.PathLike) -> list[str]:
    """Remove temporary files left by writers that died; returns the removed paths.

    Files of writers still running (by pid) are left alone.
    """
    removed = []
    for name in os.listdir(directory):
        if name.startswith(TMP_PREFIX):
            pid = name[len(TMP_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            p = os.path.join(directory, name)
            try:
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)  # a sharded snapshot's temporary folder
                removed.append(p)
            except OSError:
                pass
    return removed
