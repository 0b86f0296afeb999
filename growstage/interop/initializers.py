"""``FromCheckpoint``: a Keras initializer that reads one tensor from a checkpoint.

Any checkpoint growstage reads (growstage HDF5, TF1/TF2, Keras weight files, npz; with
``reader="returnn"`` a RETURNN checkpoint under growstage names and Keras layouts).  ``mode``:
``exact`` (the shapes must match), ``subset`` (copy the overlap, block-wise with ``split``;
the rest from ``fallback``), ``ifpossible`` (copy when the shapes match, else ``fallback``).
Its config holds the path, the name and the options, never the values, so a model config that
uses it stays small and reads the file again when rebuilt.  Keras runs initializers whenever a
layer is built, loading a saved model included: the checkpoint must be readable then too (a missing
file is an error naming it, never a silent fallback).

Built from a config (``from_config``: ``keras.saving.load_model``, ``model_from_json``), the path
came from a file someone else may have written: it may open only files inside the model file's own
folder or paths the user allowed with :func:`growstage.trusted_paths` / ``GROWSTAGE_TRUSTED_PATHS``
(see :mod:`growstage.interop.trust`), and ``allow_large`` is never taken from the config.

Example::

    >>> import keras, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "old.npz")
    >>> np.savez(path, **{"enc/kernel": np.ones((3, 2), "f4")})
    >>> init = FromCheckpoint(path, "enc/kernel", mode="subset", fallback="zeros")
    >>> d = keras.layers.Dense(4, kernel_initializer=init); d.build((None, 3))
    >>> d.kernel.numpy()[0].tolist(), sorted(init.get_config())
    ([1.0, 1.0, 0.0, 0.0], ['fallback', 'mode', 'name', 'path', 'reader', 'split'])
"""
from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from growstage.core.errors import GrowstageError, ShapeError, did_you_mean
from growstage.core.resize import resize

MODES = ("exact", "subset", "ifpossible")
READERS = (None, "returnn")


@keras.saving.register_keras_serializable(package="growstage")
class FromCheckpoint(keras.initializers.Initializer):
    """Initialise a variable with tensor ``name`` of the checkpoint at ``path``; see the module doc.

    ``split``: per axis, the block sizes of the target shape for ``subset`` (e.g. ``[[n_in], [n, n, n, n]]``
    for LSTM gates; default one block per axis).  ``fallback``: a Keras initializer (name or config).
    ``allow_large``: as for :func:`~growstage.open_checkpoint` (in code only: never saved in or read from
    a config).
    """

    def __init__(self, path: str | os.PathLike, name: str, mode: str = "exact", *, reader: str | None = None,
                 split: list | None = None, fallback: Any = "glorot_uniform", allow_large: bool = False):
        if mode not in MODES:
            raise GrowstageError(f"FromCheckpoint mode {mode!r}{did_you_mean(str(mode), MODES)} "
                                 f"(modes: {', '.join(MODES)})")
        if reader not in READERS:
            raise GrowstageError(f"FromCheckpoint reader {reader!r}: use None (growstage's formats) or 'returnn'")
        self.path, self.name, self.mode, self.reader = os.fspath(path), str(name), mode, reader
        self.split = [list(map(int, a)) for a in split] if split is not None else None
        self.fallback, self.allow_large = fallback, bool(allow_large)
        keras.initializers.get(fallback)  # a bad fallback fails here, not when a layer is built
        self._confined, self._model_file = False, None  # built in code: opens what its author named

    @classmethod
    def from_config(cls, config: dict) -> "FromCheckpoint":
        """From a (possibly untrusted) config: confined to the model file's folder and trusted paths."""
        from growstage.interop.trust import loading_model_file

        config = dict(config)
        config.pop("allow_large", None)  # a safety flag: never from a config (trusted_paths grants it)
        # a wrong type is refused when the initializer runs: an error raised here, inside Keras's
        # deserialisation, would come back as Keras's TypeError and lose the message
        bad = next((k for k in ("path", "name") if not isinstance(config.get(k), str)), None)
        found = {k: config.pop(k, None) for k in ("path", "name")}
        init = cls(**{k: (v if isinstance(v, str) else repr(v)) for k, v in found.items()}, **config)
        init._confined, init._model_file = True, loading_model_file()
        init._bad_config = None if bad is None else f"{bad!r} must be a string, not {found[bad]!r}"
        return init

    def _open_path(self) -> tuple[str, bool]:
        """``(path to open, allow_large)``; a confined initializer's path is checked first."""
        if not self._confined:
            return self.path, self.allow_large
        from growstage.interop.trust import confinement_problem, trusted_large

        if getattr(self, "_bad_config", None):
            raise GrowstageError(f"FromCheckpoint from model file {self._model_file or '(unknown)'}: its config's "
                                 f"{self._bad_config}")
        real = os.path.realpath(self.path)  # opened as resolved: a symlink swapped later cannot redirect it
        model = self._model_file
        root = None if model is None else os.path.realpath(model if os.path.isdir(model) else os.path.dirname(model))
        problem = confinement_problem(real, root)
        if problem:
            where = f"model file {model}" if model else "a model config (no model file known: only trusted paths)"
            raise GrowstageError(f"FromCheckpoint from {where}: refused to open {self.path!r}: {problem} "
                                 f"{root or 'every trusted path'}. If you trust it, load the model inside "
                                 f"growstage.trusted_paths({self.path!r}) or list it in GROWSTAGE_TRUSTED_PATHS")
        return real, trusted_large()

    def _read(self) -> np.ndarray:
        from growstage.engine.sources import open_checkpoint

        path, allow_large = self._open_path()
        if self.reader == "returnn":
            from growstage.interop.returnn.checkpoints import open_returnn

            r = open_returnn(path, allow_large=allow_large)
        else:
            r = open_checkpoint(path, allow_large=allow_large)
        with r:
            return r.read(self.name)

    def __call__(self, shape: Any, dtype: Any = None, **kwargs: Any) -> Any:
        shape = tuple(int(d) for d in shape)
        value = self._read()
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        if value.shape != shape:
            where = f"{self.name!r} of {self.path} has shape {value.shape}, the variable {shape}"
            if self.mode == "exact":
                raise ShapeError(f"FromCheckpoint: {where}; use mode='subset' or 'ifpossible'")
            fresh = keras.ops.convert_to_numpy(keras.initializers.get(self.fallback)(shape, dtype))
            if self.mode == "ifpossible":
                return keras.ops.convert_to_tensor(fresh, dtype)
            value = resize(value, shape, new_split=self.split, fill=fresh)
        return keras.ops.convert_to_tensor(value.astype(dtype), dtype)

    def get_config(self) -> dict:
        return {"path": self.path, "name": self.name, "mode": self.mode, "reader": self.reader,
                "split": self.split, "fallback": keras.initializers.serialize(keras.initializers.get(self.fallback))
                if not isinstance(self.fallback, str) else self.fallback}
