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

from growstage.framework.adapters.graph import LayerInfo, describe, layer_specs
from growstage.core.values import Param, Snapshot
from growstage.framework.variables import read_tensor, read_variable, tensor_view


class _TensorValue:
    """A snapshot value that keeps its tensor: a copied param becomes the new variable without a copy."""

    __slots__ = ("tensor", "_array", "shape", "dtype")

    def __init__(self, variable: Any):
        self.tensor = read_tensor(variable)
        self._array = read_variable(variable) if self.tensor is None else None
        self.shape = tuple(int(d) for d in variable.shape)
        self.dtype = np.dtype(variable.dtype)

    def read(self) -> np.ndarray:
        if self._array is None:
            self._array = tensor_view(self.tensor)
        return self._array

    def shards(self) -> list:
        """``(bounds, device id, read)`` per distinct shard: what ``save(..., sharded=True)`` writes."""
        return device_shards(self.tensor if self.tensor is not None else self._array)

    @classmethod
    def of(cls, tensor: Any) -> "_TensorValue":
        """A snapshot value of a device array that is no variable (an optimizer slot read on the devices)."""
        v = cls.__new__(cls)
        v.tensor, v._array = tensor, None
        v.shape, v.dtype = tuple(int(d) for d in tensor.shape), np.dtype(tensor.dtype)
        return v


def device_shards(tensor: Any) -> list:
    from growstage.core.errors import GrowstageError
    from growstage.framework.backends import backend_name, current

    ops = getattr(current(), "mesh_ops", None)
    if ops is None or not current().is_native(tensor):
        raise GrowstageError(f"save(..., sharded=True) needs the JAX backend (KERAS_BACKEND=jax), whose arrays "
                             f"know their shards; on {backend_name()} save the snapshot as one HDF5 file "
                             "(sharded=False)")
    return ops().shards(tensor)


def device_value(tensor: Any) -> Any:
    """A snapshot value of a device array (numpy arrays stay as they are)."""
    return _TensorValue.of(tensor) if not isinstance(tensor, np.ndarray) else tensor


class _VariableValue:
    """A variable read on demand: a lazy snapshot holds no copy of the model's values."""

    __slots__ = ("variable", "shape", "dtype")

    def __init__(self, variable: Any):
        self.variable = variable
        self.shape = tuple(int(d) for d in variable.shape)
        self.dtype = np.dtype(variable.dtype)

    def read(self) -> np.ndarray:
        return read_variable(self.variable)

    def shards(self) -> list:
        return device_shards(read_tensor(self.variable))


def layer_params(info: LayerInfo, lazy: bool = False) -> dict[str, Param]:
    return {p.name: Param(_VariableValue(p.variable) if lazy else _TensorValue(p.variable), split=p.split,
                          roles=p.roles, trainable=bool(getattr(p.variable, "trainable", True)))
            for p in info.params}


def snapshot(model: Any, *, allow_auto_names: bool = False, meta: dict[str, Any] | None = None,
             lazy: bool = False) -> Snapshot:
    """The values dict of a built Keras model, keyed by user-given layer names.

    Each param carries its split info and axis roles.  ``meta`` (stage, epoch,
    ...) is stored with it.  Raises :class:`~growstage.AutoNameError` for a
    layer whose name Keras generated, unless ``allow_auto_names=True``.
    ``lazy=True`` reads each variable only when asked (``growstage.save(snapshot(m, lazy=True), path)``
    streams a model to disk one param at a time); such a snapshot follows the live model.
    """
    infos = describe(model, allow_auto_names=allow_auto_names)
    layers = {name: layer_params(info, lazy) for name, info in infos.items()}
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
    return {p.name: np.array(read_variable(p.variable)) for p in layer_specs(layer)}


def param_names(layer: Any) -> dict[int, str]:
    """``{id(variable): param name}`` for one layer: how file readers name a layer's variables."""
    return {id(s.variable): s.name for s in layer_specs(layer)}
