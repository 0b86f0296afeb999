"""Checkpoint readers behind one lazy interface (:class:`Reader`).

``open_checkpoint(path)`` recognises the format from the file itself:
growstage HDF5, TF1 and TF2 checkpoints (directory, prefix or ``.index``),
a ``fit`` checkpoint directory (its latest verified ``epoch-NNNN.h5``),
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

from growstage.core.errors import StoreError
from growstage.io.readers.base import Entry, Reader, from_snapshot

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"



def detect_format(path: str) -> str:
    """``growstage`` | ``tf`` | ``keras`` | ``npz``; raises :class:`StoreError` naming the file otherwise."""
    from growstage.io.readers.tf_bundle import checkpoint_prefix

    if os.path.isdir(path):
        if checkpoint_prefix(path):
            return "tf"
        raise StoreError(path, "a directory with neither a TensorFlow 'checkpoint' file nor epoch-NNNN.h5 "
                               "training checkpoints; give a checkpoint file (epoch-NNNN.h5, *.weights.h5, "
                               "*.npz) or a TensorFlow checkpoint prefix")
    if not os.path.exists(path):
        if os.path.exists(path + ".index"):
            return "tf"
        raise StoreError(path, "no such file")
    if path.endswith(".index") or ".data-" in os.path.basename(path):
        return "tf"
    from growstage.io.hdf5_guard import require_regular_file
    require_regular_file(path)  # a FIFO would block the open() below forever
    with open(path, "rb") as fp:
        head = fp.read(8)
    if head == _HDF5_MAGIC:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return "growstage" if f.attrs.get("format") == "growstage" else "keras"
        except Exception as e:  # h5py raises OSError, KeyError, ValueError, RuntimeError on damage
            raise StoreError(path, f"damaged HDF5 file ({type(e).__name__}: {e})") from None
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise StoreError(path, f"damaged zip archive ({e})") from None
        if "model.weights.h5" in names or "config.json" in names:
            return "keras"
        return "npz"
    raise StoreError(path, "not a format growstage reads (growstage/Keras HDF5, .keras, .npz or a TensorFlow "
                           "checkpoint prefix/directory)")


def open_checkpoint(path: str | os.PathLike, *, model: Any = None, param_names: Any = None) -> Reader:
    """Open any supported checkpoint lazily; ``model`` names Keras 3 / Keras 2 object-based files' layers,
    ``param_names(layer) -> {id(variable): name}`` their params (:func:`growstage.open_checkpoint` supplies it)."""
    from growstage.io.checkpoint_dir import resolve_training_dir

    path, note = resolve_training_dir(path)
    kind = detect_format(path)
    if kind == "growstage":
        from growstage.io.store import load

        reader = from_snapshot(load(path), path)
        reader.notes += [note] if note else []
        return reader
    if kind == "tf":
        from growstage.io.readers.tf_bundle import open_tf_checkpoint

        return open_tf_checkpoint(path, model=model)
    if kind == "keras":
        from growstage.io.readers.keras_files import open_keras_weights

        return open_keras_weights(path, model=model, param_names=param_names)
    from growstage.io.readers.npz import open_npz

    return open_npz(path)


__all__ = ["Entry", "Reader", "detect_format", "from_snapshot", "open_checkpoint"]
