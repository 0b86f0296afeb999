"""Snapshots of live Keras models: the values dict with split info and roles.

Example::

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
    >>> snap = snapshot(m)
    >>> sorted(snap["out"]), snap["out"]["kernel"].split
    (['bias', 'kernel'], [[3], [2]])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .adapters.graph import LayerInfo, describe, layer_specs
from .values import Param, Snapshot


def read_variable(variable: Any) -> np.ndarray:
    """The value of a framework variable as a numpy array."""
    return np.asarray(variable.numpy())


def layer_params(info: LayerInfo) -> dict[str, Param]:
    return {p.name: Param(read_variable(p.variable), split=p.split, roles=p.roles,
                          trainable=bool(getattr(p.variable, "trainable", True)))
            for p in info.params}


def snapshot(model: Any, *, allow_auto_names: bool = False, meta: dict[str, Any] | None = None) -> Snapshot:
    """The values dict of a built Keras model, keyed by user-given layer names.

    Each param carries its split info and axis roles.  ``meta`` (stage, epoch,
    ...) is stored with it.  Raises :class:`~growstage.AutoNameError` for a
    layer whose name Keras generated, unless ``allow_auto_names=True``.
    """
    infos = describe(model, allow_auto_names=allow_auto_names)
    layers = {name: layer_params(info) for name, info in infos.items()}
    notes = [f"{name}: {n}" for name, info in infos.items() for n in info.notes]
    m = {"model": model.name, "layer_types": {n: i.kind for n, i in infos.items()}}
    m.update(meta or {})
    return Snapshot(layers, meta=m, notes=notes)


def get_param_values_dict(layer: Any) -> dict[str, np.ndarray]:
    """``{param_name: ndarray}`` of one layer (RETURNN's ``get_param_values_dict``).

    Example::

        >>> import keras
        >>> d = keras.layers.Dense(2, name="d"); d.build((None, 3))
        >>> {k: v.shape for k, v in get_param_values_dict(d).items()}
        {'kernel': (3, 2), 'bias': (2,)}
    """
    return {p.name: read_variable(p.variable) for p in layer_specs(layer)}
