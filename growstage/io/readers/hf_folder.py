"""A Hugging Face model folder (``config.json`` + ``model.safetensors`` or shards listed by
``model.safetensors.index.json``) as a lazy :class:`~growstage.io.readers.base.Reader` with HF's names.

Every shard's header is read and checked before any tensor is (names, dtypes, shapes, offsets inside
the file and not overlapping); every file the index names must lie inside the folder (or, for the HF
cache's ``snapshots/REV -> ../../blobs/HASH`` links, inside that one cache repo folder), checked
before any shard is opened.  A tensor is read when used, through ``safetensors.safe_open``'s mmap.

Example::

    >>> import json, os, tempfile, numpy as np
    >>> from safetensors.numpy import save_file
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "config.json"), "w").write(json.dumps({"model_type": "gpt2"}))
    >>> save_file({"wte.weight": np.ones((4, 2), "f4")}, os.path.join(d, "model.safetensors"))
    >>> with open_hf_folder(d) as r:
    ...     print(r.format, r["wte.weight"].shape, r.meta["hf_config"]["model_type"])
    hf (4, 2) gpt2
"""
from __future__ import annotations

import json
import math
import os
import stat
from typing import Any

import numpy as np

from growstage.core.errors import StoreError
from growstage.io.readers.base import Entry, Reader

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CONFIG = "config.json"
HEADER_LIMIT = 100 << 20  # safetensors' own limit on a header's JSON
# the dtypes the safetensors format defines, and numpy's name for those numpy can hold
_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "F16": "float16",
           "BF16": "bfloat16", "U32": "uint32", "I32": "int32", "F32": "float32", "U64": "uint64",
           "I64": "int64", "F64": "float64", "F8_E4M3": None, "F8_E5M2": None, "F8_E8M0": None,
           "F4": None, "F6_E2M3": None, "F6_E3M2": None, "C64": "complex64"}


def is_hf_folder(path: str) -> bool:
    """A directory holding ``config.json`` and ``model.safetensors`` or its index.

    >>> import tempfile; is_hf_folder(tempfile.mkdtemp())
    False
    """
    return (os.path.isdir(path) and os.path.lexists(os.path.join(path, CONFIG))
            and (os.path.lexists(os.path.join(path, INDEX)) or os.path.lexists(os.path.join(path, SINGLE))))


def missing_config(path: str) -> str | None:
    """The problem with a directory of Hugging Face safetensors weights that lacks ``config.json``, else None.

    >>> import tempfile; d = tempfile.mkdtemp(); _ = open(os.path.join(d, "model.safetensors"), "wb")
    >>> missing_config(d)[:52]
    'Hugging Face weights (model.safetensors) but no conf'
    """
    if not os.path.isdir(path) or os.path.lexists(os.path.join(path, CONFIG)):
        return None
    found = [n for n in (INDEX, SINGLE) if os.path.lexists(os.path.join(path, n))]
    shards = [n for n in os.listdir(path) if n.endswith(".safetensors") and n != SINGLE]
    if shards:
        found.append(f"{len(shards)} *.safetensors shard{'s' * (len(shards) > 1)}")
    if not found:
        return None
    return (f"Hugging Face weights ({', '.join(found)}) but no config.json next to them: growstage reads the "
            f"model type and sizes from it; copy the config.json of the model these weights come from into "
            f"the folder (transformers: AutoConfig.from_pretrained(NAME).save_pretrained(FOLDER))")


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def allowed_root(folder: str) -> str:
    """Where the folder's files may resolve to: the folder, or the HF cache repo folder above
    ``snapshots/REV`` (whose files link to ``../../blobs/HASH``)."""
    real = os.path.realpath(folder)
    parent = os.path.dirname(real)
    if os.path.basename(parent) == "snapshots" and os.path.isdir(os.path.join(os.path.dirname(parent), "blobs")):
        return os.path.dirname(parent)
    return real


def _inside(folder: str, name: Any, root: str, what: str) -> str:
    """``folder/name`` after refusing a name that is absolute, climbs out or resolves outside ``root``."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise StoreError(folder, f"{what} names the file {name!r}: not a file name; refused")
    norm = os.path.normpath(name)
    if os.path.isabs(name) or norm == ".." or norm.startswith(".." + os.sep) or os.path.splitdrive(name)[0]:
        raise StoreError(folder, f"{what} names {name!r}, a file outside the folder: refused")
    path = os.path.join(folder, norm)
    real = os.path.realpath(path)
    if os.path.commonpath([real, root]) != root:
        raise StoreError(folder, f"{what} names {name!r}, which resolves to {real}, outside "
                                 f"{root}: refused (a link leaving the folder)")
    return path


def _regular(path: str, folder: str) -> int:
    try:
        st = os.stat(path)
    except OSError as e:
        raise StoreError(path, f"cannot stat this shard of {folder} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(path, f"this shard of {folder} is not a regular file (FIFO, device or directory): refused")
    return st.st_size


def _load_json(path: str, folder: str, root: str) -> Any:
    path = _inside(folder, os.path.basename(path), root, "the folder")
    _regular(path, folder)
    try:
        with open(path, encoding="utf-8") as fp:
            return json.load(fp)
    except (OSError, ValueError, RecursionError) as e:
        raise StoreError(path, f"cannot read it as JSON ({type(e).__name__}: {e})") from None


def shard_files(folder: str) -> tuple[dict[str, str], dict[str, str]]:
    """``({tensor: shard path}, {shard name: shard path})`` from the index (or the one file), every
    name checked to stay inside the folder before anything but the index is opened."""
    root = allowed_root(folder)
    if not os.path.lexists(os.path.join(folder, INDEX)):
        path = _inside(folder, SINGLE, root, "the folder")
        return {}, {SINGLE: path}
    index = _load_json(os.path.join(folder, INDEX), folder, root)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise StoreError(os.path.join(folder, INDEX), "no 'weight_map' object naming tensors and their shards")
    shards = {f: _inside(folder, f, root, f"{INDEX}'s weight_map") for f in dict.fromkeys(weight_map.values())}
    return {t: shards[f] for t, f in weight_map.items()}, shards


def read_header(path: str, folder: str) -> tuple[dict[str, dict], int]:
    """The checked header of one shard and where its data starts."""
    size = _regular(path, folder)
    with open(path, "rb") as fp:
        head = fp.read(8)
        if len(head) < 8:
            raise StoreError(path, f"shard of {folder} is {size} bytes: too short for a safetensors header")
        n = int.from_bytes(head, "little")
        if n > size - 8 or n > HEADER_LIMIT:
            raise StoreError(path, f"shard of {folder} declares a {n}-byte header but the file holds {size} bytes")
        raw = fp.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise StoreError(path, f"shard of {folder}: damaged header ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise StoreError(path, f"shard of {folder}: the header is not a JSON object")
    header.pop("__metadata__", None)
    _check_entries(header, size - 8 - n, path, folder)
    return header, 8 + n


def _check_entries(header: dict, data_size: int, path: str, folder: str) -> None:
    spans = []
    for name, info in header.items():
        bad = f"shard of {folder}: tensor {name!r}"
        if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
            dt = info.get("dtype") if isinstance(info, dict) else info
            raise StoreError(path, f"{bad} has dtype {dt!r}, which safetensors does not define")
        shape, offs = info.get("shape"), info.get("data_offsets")
        if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
                or not isinstance(offs, list) or len(offs) != 2 or not all(type(o) is int for o in offs)):
            raise StoreError(path, f"{bad} has a malformed shape {shape!r} or data_offsets {offs!r}")
        if _DTYPES[info["dtype"]] is None:
            raise StoreError(path, f"{bad} has dtype {info['dtype']}, which numpy cannot hold; convert the "
                                   "checkpoint to F32/F16/BF16")
        begin, end = offs
        want = math.prod(shape) * _np_dtype(_DTYPES[info["dtype"]]).itemsize
        if not 0 <= begin <= end <= data_size or end - begin != want:
            raise StoreError(path, f"{bad} has data_offsets {offs} for {want} bytes, outside the file's "
                                   f"{data_size} data bytes or of the wrong length")
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise StoreError(path, f"shard of {folder}: tensors {n0!r} and {n1!r} overlap (bytes {b1}..{e0})")


class _Shards:
    """Open shards on first read (safe_open mmaps them), one at a time: moving to another shard unmaps
    the last, so the pages of at most one shard count in the process's memory; ``close`` releases it."""

    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        if path not in self.handles:
            self.close()
            try:
                from safetensors import safe_open
            except ImportError:
                raise StoreError(path, "reading safetensors needs the safetensors package "
                                       "(pip install 'growstage[hf]')") from None

            self.handles[path] = safe_open(path, framework="np")
        return self.handles[path]

    def close(self) -> None:
        for h in self.handles.values():
            getattr(h, "__exit__", lambda *a: None)(None, None, None)
        self.handles.clear()


def _loader(shards: _Shards, path: str, name: str, dtype: np.dtype, shape: tuple, start: int):
    def load(index: Any) -> np.ndarray:
        if dtype.name == "bfloat16":  # safetensors' numpy side has no bfloat16: map the bytes ourselves
            arr = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape) if math.prod(shape) \
                else np.zeros(shape, dtype)
            return np.array(arr if index is None else arr[index])
        handle = shards.get(path)
        if index is None:
            return handle.get_tensor(name)
        try:
            return np.asarray(handle.get_slice(name)[index])
        except Exception:  # an index get_slice does not take (steps, ellipsis): read whole, then index
            return handle.get_tensor(name)[index]
    return load


def open_hf_folder(folder: str | os.PathLike) -> Reader:
    """The folder's tensors by their HF names; ``meta['hf_config']`` holds its ``config.json``."""
    folder = os.fspath(folder)
    weight_map, shards = shard_files(folder)
    config = _load_json(os.path.join(folder, CONFIG), folder, allowed_root(folder))
    if not isinstance(config, dict):
        raise StoreError(os.path.join(folder, CONFIG), "not a JSON object")
    handles, entries = _Shards(), {}
    for shard, path in shards.items():
        header, data_start = read_header(path, folder)
        for name, info in header.items():
            if weight_map and weight_map.get(name) != path:
                continue  # the index says where each tensor lives (HF reads by it); others are not the model's
            dtype, shape = _np_dtype(_DTYPES[info["dtype"]]), tuple(info["shape"])
            start = data_start + info["data_offsets"][0]
            entries[name] = Entry(shape, dtype, _loader(handles, path, name, dtype, shape, start), source=name)
    for name, path in weight_map.items():
        if name not in entries:
            raise StoreError(path, f"shard of {folder} lacks tensor {name!r}, which {INDEX} promises in it")
    meta = {"hf_config": config, "hf_folder": folder}
    return Reader(folder, "hf", entries, meta=meta, closer=handles.close)
