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
from typing import Any

# The numpy core loads at once; everything else (h5py, TensorFlow, Keras) loads on first use, so
# that `import growstage` stays light and the core works in an interpreter with numpy alone.
from .core.errors import (AutoNameError, GrowstageError, PlanError, ShapeError, StoreError,  # noqa: F401
                          TransferError, UnknownNameError)
from .core.resize import derive_split, resize  # noqa: F401
from .core.rules import Rules  # noqa: F401
from .core.values import Param, Snapshot  # noqa: F401

_LAZY = {
    "load": "io.store", "save": "io.store", "Reader": "io.readers", "open_checkpoint": "engine.sources",
    "ParamSpec": "framework.adapters", "register_adapter": "framework.adapters",
    "unregister_adapter": "framework.adapters",
    "get_param_values_dict": "framework.capture", "snapshot": "framework.capture",
    "transfer_optimizer": "framework.optimizer",
    "Plan": "engine.planning", "plan": "engine.planning", "PlanRow": "engine.report", "Report": "engine.report",
    "ImportContext": "engine.writing", "apply": "engine.writing", "set_param_values_by_dict": "engine.writing",
    "transfer": "engine.writing", "rebuild": "engine.writing", "TransferOptions": "engine.options",
    "init_from_checkpoint": "interop.assignment", "preload": "interop.preloading",
    "keras_lstm_to_tf1": "interop.lstm_layouts", "tf1_lstm_to_keras": "interop.lstm_layouts",
    "Schedule": "train.schedule", "Stage": "train.schedule", "layerwise": "train.layerwise",
    "stack": "train.layerwise", "returnn_pretrain": "train.pretrain", "GrowingHistory": "train.fitting", "fit": "train.fitting",
    "stack_rename": "core.stacking", "GrowthLR": "train.growth_lr", "trusted_paths": "interop.trust",
    "export_hf": "interop.hf.export",
}
# the layer packages, reachable as attributes without an import
_SUBPACKAGES = ("core", "io", "framework", "engine", "train", "interop", "cli", "demo", "filetools", "returnn",
                "initializers", "lm", "export")

__version__ = "0.1.0"

__all__ = sorted(["AutoNameError", "GrowstageError", "PlanError", "ShapeError", "StoreError", "TransferError",
                  "UnknownNameError", "derive_split", "resize", "Rules", "Param", "Snapshot", *_LAZY])


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
