"""What an adapter tells growstage about a layer type, and the registry.

An adapter lists a layer's params (layer-relative names, the variables, split
info per axis, axis roles) given the split of the layer's input features, and
says how the layer's output features are split.  Users describe their own
layer types with :func:`register_adapter`.

Example::

    >>> import keras
    >>> from growstage.framework.adapters.base import ParamSpec, register_adapter
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.w = self.add_weight(shape=(shape[-1],), name="w")
    >>> @register_adapter(Scale)
    ... def _scale_params(layer, in_split):
    ...     return [ParamSpec("w", layer.w, [in_split], ("units",))]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from growstage.core.resize import Split

ParamsFn = Callable[[Any, list[int]], list["ParamSpec"]]
OutSplitFn = Callable[[Any, list[int], int], list[int]]


@dataclass
class ParamSpec:
    """One param of a live layer: name, variable, split info, axis roles."""

    name: str
    variable: Any
    split: Split
    roles: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.variable.shape)


@dataclass
class Adapter:
    params: ParamsFn
    output_split: Optional[OutSplitFn] = None


_REGISTRY: dict[type, Adapter] = {}


def register_adapter(layer_type: type, params: ParamsFn | None = None, *, output_split: OutSplitFn | None = None):
    """Describe a layer type to growstage.

    ``params(layer, in_split) -> [ParamSpec]`` lists its params; ``in_split`` is
    the block split of its input's last axis as found in the functional graph.
    ``output_split(layer, in_split, out_dim) -> [int]`` (optional) says how its
    output's last axis is made of blocks (default: one block).  Usable as a
    decorator.  A registration for a subclass wins over one for its base.
    """
    def deco(fn: ParamsFn) -> ParamsFn:
        _REGISTRY[layer_type] = Adapter(fn, output_split)
        return fn

    return deco(params) if params is not None else deco


def unregister_adapter(layer_type: type) -> None:
    """Forget the adapter registered for ``layer_type`` (a registration is process-wide).

    Raises KeyError, naming the type, when none is registered for it.
    """
    if layer_type not in _REGISTRY:
        raise KeyError(f"no adapter is registered for {layer_type.__name__}")
    del _REGISTRY[layer_type]


def find_adapter(layer: Any) -> Adapter | None:
    """The adapter registered for the most derived class of ``layer``, if any."""
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None
