"""Checkpoint readers behind one lazy interface (:class:`Reader`).

``open_checkpoint(path)`` recognises the format from the file itself:
growstage HDF5, TF1 and TF2 checkpoints (directory, prefix or ``.index``),
a ``fit`` checkpoint directory (its latest verified ``epoch-NNNN.h5``), a Hugging Face model folder
(safetensors, sharded or not; HF's tensor names),
Keras 3 ``.weights.h5`` and ``.keras``, legacy Keras 2 ``.h5`` and ``.npz``.

Example::

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, **{"out/kernel": np.eye(2, dtype="f4")})
    >>> with open_checkpoint(path) as r:
    ...     print(r.format, {n: e.shape for n, e in r.items()})
    npz {'out/kernel': (2, 2)}
"""
from __future__ import annotations

import os
import zipfile
from typing import Any

from growstage.core.errors import GrowstageError, StoreError
from growstage.io.readers.base import Entry, Reader, from_snapshot

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
_TF_INDEX_MAGIC = bytes.fromhex("57fb808b247547db")  # the last 8 bytes of a TensorFlow table (.index) file


def hdf5_offset(path: str) -> int | None:
    """Where the HDF5 signature starts (0, 512, 1024, 2048, ...: HDF5 allows a user block), or None.

    Read with plain ``open()``: deciding "is this HDF5" never asks HDF5 itself, which can spin
    or crash on a damaged superblock.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x"); _ = open(p, "wb").write(b" " * 512 + _HDF5_MAGIC)
    >>> hdf5_offset(p)
    512
    """
    with open(path, "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        offset = 0
        while offset + 8 <= size:
            fp.seek(offset)
            if fp.read(8) == _HDF5_MAGIC:
                return offset
            offset = 512 if offset == 0 else offset * 2
    return None


def is_tf_index(path: str) -> bool:
    """True when ``path`` ends like a TensorFlow table file (its footer's magic number).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.index"); _ = open(p, "wb").write(bytes(40) + _TF_INDEX_MAGIC)
    >>> is_tf_index(p), is_tf_index(p + ".missing")
    (True, False)
    """
    try:
        with open(path, "rb") as fp:
            if os.fstat(fp.fileno()).st_size < 48:  # a table footer alone is 48 bytes
                return False
            fp.seek(-8, os.SEEK_END)
            return fp.read(8) == _TF_INDEX_MAGIC
    except OSError:
        return False


def _hdf5_kind(path: str) -> str:
    """``growstage`` or ``keras``: risky structures are refused before any attribute is read."""
    import h5py

    from growstage.io.hdf5_guard import refuse_risky

    try:
        with h5py.File(path, "r") as f:
            refuse_risky(f, path, allow_large=True)  # detection reads no data; the reader checks sizes
            return "growstage" if f.attrs.get("format") == "growstage" else "keras"
    except StoreError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ValueError, RuntimeError on damage
        raise StoreError(path, f"damaged HDF5 file ({type(e).__name__}: {e})") from None


def _tf_kind(path: str) -> str:
    from growstage.io.readers.tf_bundle import checkpoint_prefix

    prefix = checkpoint_prefix(path)
    if prefix is not None and not is_tf_index(prefix + ".index"):
        raise StoreError(prefix + ".index", "not a TensorFlow checkpoint index (its footer's magic number is wrong): "
                                            "damaged, truncated or not a checkpoint")
    return "tf"


def detect_format(path: str) -> str:
    """``growstage`` | ``tf`` | ``keras`` | ``npz`` | ``hf``, from the file's own first bytes (an HDF5 signature, a zip
    header, a TensorFlow index footer); raises :class:`StoreError` naming the file otherwise.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "w.h5"); _ = open(p, "wb").write(b"not a checkpoint")
    >>> try:
    ...     detect_format(p)
    ... except StoreError as e:
    ...     print(e.problem[:28])
    not a format growstage reads
    """
    from growstage.io.readers.tf_bundle import checkpoint_prefix

    if not path:
        raise StoreError("''", "an empty path; give a checkpoint file or directory")
    if os.path.isdir(path):
        from growstage.io.sharded_checks import SHARD_NAME
        from growstage.io.sharded_store import is_sharded_snapshot
        from growstage.io.readers.hf_folder import is_hf_folder, missing_config

        if is_sharded_snapshot(path):
            return "growstage"
        if any(SHARD_NAME.match(n) for n in os.listdir(path)):  # device-NNNNN.safetensors: not HF's shards
            raise StoreError(path, "a sharded growstage snapshot's shard files without its index.json: a partial "
                                   "copy (a killed writer leaves a .growstage-tmp- folder, never this name); "
                                   "copy the whole folder again")
        if is_hf_folder(path):
            return "hf"
        if checkpoint_prefix(path):
            return _tf_kind(path)
        if missing_config(path):
            raise StoreError(path, missing_config(path))
        raise StoreError(path, "a directory with neither a TensorFlow 'checkpoint' file, epoch-NNNN.h5 "
                               "training checkpoints nor a Hugging Face config.json with model.safetensors "
                               "(or its index); give a checkpoint file (epoch-NNNN.h5, *.weights.h5, "
                               "*.npz) or a TensorFlow checkpoint prefix")
    if not os.path.exists(path):
        if os.path.exists(path + ".index"):
            return _tf_kind(path)
        raise StoreError(path, "no such file")
    from growstage.io.hdf5_guard import require_regular_file
    require_regular_file(path)  # a FIFO would block the open() below forever
    if path.endswith(".index") or ".data-" in os.path.basename(path):
        return _tf_kind(path)
    with open(path, "rb") as fp:
        head = fp.read(8)
    if head[:4] in _ZIP_MAGICS:
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise StoreError(path, f"damaged zip archive ({e})") from None
        return "keras" if "model.weights.h5" in names or "config.json" in names else "npz"
    if hdf5_offset(path) is not None:
        return _hdf5_kind(path)
    raise StoreError(path, "not a format growstage reads (growstage/Keras HDF5, .keras, .npz or a TensorFlow "
                           "checkpoint prefix/directory)")


# What readers and h5py/zipfile/json raise on a damaged or hostile file; each becomes a StoreError naming it.
READ_ERRORS = (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError, EOFError,
               OverflowError, MemoryError, RecursionError, zipfile.BadZipFile)


def as_store_error(path: Any, e: BaseException) -> StoreError:
    """``e`` (raised while reading ``path``) as one line of :class:`StoreError`.

    >>> str(as_store_error("w.h5", ValueError("bad\\nvalue")))
    'w.h5: cannot read it (ValueError: bad value)'
    """
    text = " ".join(f"{type(e).__name__}: {e}".split())  # one line: HDF5 messages span several
    return StoreError(os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path),
                      f"cannot read it ({text[:400]})")


def open_checkpoint(path: str | os.PathLike, *, model: Any = None, param_names: Any = None,
                    allow_large: bool = False) -> Reader:
    """Open any supported checkpoint lazily; ``model`` names Keras 3 / Keras 2 object-based files' layers,
    ``param_names(layer) -> {id(variable): name}`` their params (:func:`growstage.open_checkpoint` supplies it).

    ``allow_large``: accept HDF5 datasets that declare far more bytes than their file holds.  Every
    failure is a :class:`~growstage.core.errors.GrowstageError` naming the file.
    """
    try:
        return _open(path, model, param_names, allow_large)
    except GrowstageError:
        raise
    except READ_ERRORS as e:
        raise as_store_error(path, e) from None


def _open(path: Any, model: Any, param_names: Any, allow_large: bool) -> Reader:
    from growstage.io.checkpoint_dir import resolve_training_dir

    if not isinstance(path, (str, os.PathLike)):
        raise StoreError(repr(path), "not a checkpoint path; give a file or directory name")
    if not os.fspath(path):
        raise StoreError("''", "an empty path; give a checkpoint file or directory")
    path, note = resolve_training_dir(path)
    kind = detect_format(path)
    if kind == "growstage":
        from growstage.io.store import load

        reader = from_snapshot(load(path, allow_large=allow_large), path)
        reader.notes += [note] if note else []
        return reader
    if kind == "tf":
        from growstage.io.readers.tf_bundle import open_tf_checkpoint

        return open_tf_checkpoint(path, model=model)
    if kind == "hf":
        from growstage.io.readers.hf_folder import open_hf_folder

        return open_hf_folder(path)
    if kind == "keras":
        from growstage.io.readers.keras_files import open_keras_weights

        return open_keras_weights(path, model=model, param_names=param_names, allow_large=allow_large)
    from growstage.io.readers.npz import open_npz

    return open_npz(path)


__all__ = ["Entry", "Reader", "detect_format", "from_snapshot", "open_checkpoint"]
