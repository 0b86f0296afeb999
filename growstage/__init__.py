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
from . import readers
from .adapters import ParamSpec, register_adapter
from .assignment import init_from_checkpoint
from .convert import keras_lstm_to_tf1, tf1_lstm_to_keras
from .errors import (AutoNameError, GrowstageError, PlanError, ShapeError, StoreError, TransferError,
                     UnknownNameError)
from .plan import Plan, plan
from .preload import preload
from .readers import Reader, open_checkpoint
from .report import PlanRow
from .resize import derive_split, resize
from .rules import Rules
from .schedule import Schedule, Stage, layerwise, stack
from .snapshot import get_param_values_dict, snapshot
from .store import load, save
from .trainer import GrowingHistory, fit
from .transfer import ImportContext, Report, apply, set_param_values_by_dict, transfer
from .values import Param, Snapshot

__version__ = "0.1.0"

__all__ = [
    "AutoNameError", "GrowingHistory", "GrowstageError", "Schedule", "Stage", "fit", "layerwise", "stack", "ImportContext", "Param", "ParamSpec", "Plan", "PlanError", "PlanRow",
    "Report", "ShapeError", "Snapshot", "StoreError", "TransferError", "UnknownNameError", "apply",
    "derive_split", "get_param_values_dict", "load", "plan", "register_adapter", "resize", "save",
    "set_param_values_by_dict", "snapshot", "transfer", "init_from_checkpoint", "keras_lstm_to_tf1",
    "tf1_lstm_to_keras", "preload", "Reader", "open_checkpoint", "readers", "Rules",
]
