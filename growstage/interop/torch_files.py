"""Tensors of a safetensors file or a state_dict, read one at a time as ``from_torch`` asks for them.

>>> import numpy as np, os, tempfile
>>> from safetensors.numpy import save_file
>>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
>>> save_file({"a.weight": np.ones((2, 2), "f4"), "b.weight": np.zeros(3, "f4")}, p)
>>> sd = FileTensors(p)
>>> sorted(sd), Renamed(sd, {"weight": "b.weight"})["weight"].shape
(['a.weight', 'b.weight'], (3,))
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from growstage.core.errors import GrowstageError, StoreError


class FileTensors(Mapping):
    """A safetensors file's tensors, each read when asked for: from_torch reads only what a layer takes."""

    def __init__(self, path: str):
        from growstage.io.hdf5_guard import require_regular_file

        try:
            from safetensors import safe_open
        except ImportError:
            raise GrowstageError("reading a .safetensors file needs the safetensors package: "
                                 "pip install safetensors") from None
        if not os.path.exists(path):
            raise StoreError(path, "no such file")
        require_regular_file(path)  # a FIFO would block the open forever
        self.path = path
        try:
            self._file = safe_open(path, framework="numpy")
            self._keys = list(self._file.keys())
        except Exception as e:  # a truncated or foreign file: say which and why
            raise StoreError(path, f"cannot read it as safetensors ({type(e).__name__}: {e})") from None

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(key)
        try:
            return self._file.get_tensor(key)
        except Exception as e:
            raise StoreError(self.path, f"cannot read tensor {key!r} ({type(e).__name__}: {e})") from None

    def __contains__(self, key: object) -> bool:  # Mapping's default would read the tensor
        return key in self._keys

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class Renamed(Mapping):
    """``{relative name: tensor}`` over another mapping, read lazily."""

    def __init__(self, base: Mapping, names: dict[str, str]):
        self.base, self.names = base, names

    def __getitem__(self, key: str):
        return self.base[self.names[key]]

    def __contains__(self, key: object) -> bool:
        return key in self.names

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)
