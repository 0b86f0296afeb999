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

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from growstage.core.resize import Split

ParamsFn = Callable[[Any, list[int]], list["ParamSpec"]]
OutSplitFn = Callable[[Any, list[int], int], list[int]]
# (layer) -> (identity, reason): whether zeroing the params of the layer's residual branches
# (ParamSpec.branch) makes a new layer the identity, and why
StartFn = Callable[[Any], tuple[bool, str]]


@dataclass
class ParamSpec:
    """One param of a live layer: name, variable, split info, axis roles.

    ``branch``: the residual branch inside the layer's ``call`` whose output this param produces
    linearly (an attention output projection, an FFN down-projection): zeroing every param of a
    branch makes it add nothing (see ``register_adapter(..., new_block=)``).  ``normalizes``: a
    normalisation's gain or bias over the param's axis (growth notes when its statistics change).
    ``offset``: the layer reads ``value + offset`` (Gemma's RMSNorm gain ``1 + scale``), so growth
    scales that sum.  ``size_power``: ``(axis, p)`` when the layer multiplies the param's output by
    ``(size of that axis) ** p`` (Gemma's embeddings times sqrt(hidden)): growth compensates it.
    """

    name: str
    variable: Any
    split: Split
    roles: tuple[str, ...]
    branch: Optional[str] = None
    normalizes: bool = False
    offset: float = 0.0
    size_power: Optional[tuple[int, float]] = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.variable.shape)


@dataclass
class Adapter:
    params: ParamsFn
    output_split: Optional[OutSplitFn] = None
    new_block: Optional[StartFn] = None
    output_norm: Optional[Callable[[Any], Optional[str]]] = None


_REGISTRY: dict[type, Adapter] = {}


def register_adapter(layer_type: type, params: ParamsFn | None = None, *, output_split: OutSplitFn | None = None,
                     new_block: StartFn | None = None, output_norm: Callable[[Any], str | None] | None = None):
    """Describe a layer type to growstage.

    ``params(layer, in_split) -> [ParamSpec]`` lists its params, every variable of the layer
    (a variable left out is an error when a model is described); ``in_split`` is
    the block split of its input's last axis as found in the functional graph.
    ``output_split(layer, in_split, out_dim) -> [int]`` (optional) says how its
    output's last axis is made of blocks (default: one block).  ``new_block(layer) ->
    (identity, reason)`` (optional, for layers whose ``call`` adds residual branches: params
    with ``ParamSpec.branch`` set) says whether a new such layer whose branch params are zeroed
    is the identity (a pre-LN block is; a post-LN block is not).  ``output_norm(layer) -> prefix | None``
    (optional, post-LN blocks): the param-name prefix of the normalisation that ends the block; new
    such blocks after an old one start as the identity by taking over that normalisation (see
    ``deepen.post_ln_chains``).  Usable as a
    decorator.  A registration for a subclass wins over one for its base.
    """
    def deco(fn: ParamsFn) -> ParamsFn:
        _REGISTRY[layer_type] = Adapter(fn, output_split, new_block, output_norm)
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
    load_optional()
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


# Adapters for optional libraries register on first use: their module is imported only once the
# library itself is (a model of that library cannot exist before), so growstage neither needs nor
# loads them otherwise.
_OPTIONAL = {"keras_hub": "growstage.framework.adapters.hub"}
_LOADED: set[str] = set()


def load_optional() -> None:
    """Register the adapters of every optional library that the process has imported."""
    if len(_LOADED) == len(_OPTIONAL):
        return
    for lib, module in _OPTIONAL.items():
        if lib not in _LOADED and sys.modules.get(lib) is not None:  # None: an import that was blocked
            _LOADED.add(lib)
            importlib.import_module(module)


@dataclass
class ModelKind:
    """How growstage walks a model class: ``transparent`` (its name is no prefix of its layers' keys and
    its layers' names are the library's, stable across builds) and a ``hook(model, infos)`` that
    adjusts the described layers once the walk is done (roles a whole model decides, e.g. a tied output)."""

    transparent: bool = False
    hook: Optional[Callable[[Any, dict], None]] = None


_MODELS: dict[type, ModelKind] = {}


def register_model(model_type: type, *, transparent: bool = False,
                   hook: Callable[[Any, dict], None] | None = None) -> None:
    """Tell growstage about a library's model class (see :class:`ModelKind`)."""
    _MODELS[model_type] = ModelKind(transparent, hook)


def find_model_kinds(model: Any) -> list[ModelKind]:
    """The registrations that apply to ``model``, most derived class first."""
    load_optional()
    return [_MODELS[c] for c in type(model).__mro__ if c in _MODELS]
