"""growstage: carry trained parameters across architecture changes.

Example::

    >>> import keras, growstage
    >>> def build(width):
    ...     x = keras.Input((None, 8))
    ...     h = keras.layers.LSTM(width, return_sequences=True, name="enc")(x)
    ...     return keras.Model(x, keras.layers.Dense(5, name="out")(h))
    >>> small, big = build(4), build(6)
    >>> rep = growstage.transfer(growstage.snapshot(small), big, mode="subset")
    >>> rep.row("enc/cell/kernel").action
    'padded'
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# numpy-only parts load at once; everything that needs TensorFlow loads on first use, so that
# `import growstage.store` (a checkpoint writer, the crash harness) stays light.
from .errors import (AutoNameError, GrowstageError, PlanError, ShapeError, StoreError,  # noqa: F401
                     TransferError, UnknownNameError)
from .resize import derive_split, resize  # noqa: F401
from .rules import Rules  # noqa: F401
from .store import load, save  # noqa: F401
from .values import Param, Snapshot  # noqa: F401

_LAZY = {
    "ParamSpec": "adapters", "register_adapter": "adapters", "init_from_checkpoint": "assignment",
    "keras_lstm_to_tf1": "convert", "tf1_lstm_to_keras": "convert", "Plan": "plan", "plan": "plan",
    "preload": "preload", "Reader": "readers", "open_checkpoint": "readers", "PlanRow": "report",
    "Schedule": "schedule", "Stage": "schedule", "layerwise": "schedule", "stack": "schedule",
    "get_param_values_dict": "snapshot", "snapshot": "snapshot", "GrowingHistory": "trainer", "fit": "trainer",
    "ImportContext": "transfer", "Report": "transfer", "apply": "transfer",
    "set_param_values_by_dict": "transfer", "transfer": "transfer", "rebuild": "transfer",
}
_SUBPACKAGES = ("adapters", "readers", "growth", "fileops", "checkpoint", "checkpoint_dir")

__version__ = "0.1.0"

__all__ = sorted(["AutoNameError", "GrowstageError", "PlanError", "ShapeError", "StoreError", "TransferError",
                  "UnknownNameError", "derive_split", "resize", "Rules", "load", "save", "Param", "Snapshot",
                  *_LAZY])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'growstage' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))


class _Package(types.ModuleType):
    # Importing a submodule sets it as an attribute of its package; for the modules named like the
    # function they hold (growstage.snapshot, .plan, .transfer, .preload) the function must win.
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
