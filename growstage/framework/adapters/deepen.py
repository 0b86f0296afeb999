"""Function-preserving starts for layers a grown model adds (fills preserve, net2net, double).

A new layer whose output reaches an ``Add`` through new or weightless layers
sits in a residual branch: the last weighted layer before the ``Add`` starts
at zero (a Dense/Conv: kernel and bias; attention: its output projection; a
recurrent layer: every weight, which makes an LSTM/GRU output exactly zero;
a normalisation: gamma and beta), so the branch adds nothing.  Other new
layers start as the identity when they can (Net2DeeperNet): a Dense with as
many units as inputs and a linear or ReLU activation (exact for ReLU when its
input is a ReLU output, else reported).  Anything else is reported as not
function-preserving.

Example::

    >>> import keras
    >>> x = keras.Input((4,))
    >>> h = keras.layers.Dense(4, activation="relu", name="a")(x)
    >>> h = keras.layers.Dense(4, activation="relu", name="new")(h)
    >>> m = keras.Model(x, keras.layers.Dense(2, name="out")(h))
    >>> from growstage.framework.adapters.graph import describe
    >>> new_layer_start(describe(m), "new", {"new"})
    ('identity', 'new layer: starts as the identity (Net2DeeperNet)')
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from growstage.framework.adapters.base import find_adapter
from growstage.framework.adapters.graph import LayerInfo

_IDENTITY_ACTS = ("linear", "relu")


def _consumers(layer: Any) -> list[Any]:
    ops = [n.operation for n in getattr(layer, "_outbound_nodes", []) if getattr(n, "operation", None) is not None]
    return list({id(op): op for op in ops}.values())  # attention reads one tensor as query and value


def _activation(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def _branch_end(layer: Any, new_ids: set[int]) -> Any | None:
    """The last weighted layer before an ``Add`` on the single-consumer path from ``layer``, or None."""
    last, cur = layer, layer
    for _ in range(64):
        nxt = _consumers(cur)
        if len(nxt) != 1:
            return None
        cur = nxt[0]
        if isinstance(cur, keras.layers.Add):
            return last
        if getattr(cur, "weights", ()):  # a bare op (x[:, 0], x * c) has no weights at all
            if id(cur) not in new_ids:
                return None
            last = cur
    return None


def _input_layer(layer: Any) -> Any | None:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes or not nodes[0].input_tensors:
        return None
    hist = getattr(nodes[0].input_tensors[0], "_keras_history", None)
    return hist.operation if hist is not None else None


def new_layer_start(targets: dict[str, LayerInfo], name: str, new_layers: set[str],
                    new_ids: set[int] | None = None) -> tuple[str, str]:
    """``(action, reason)`` for new layer ``name``: action ``zeroed``, ``identity`` or ``kept-init``.

    ``new_ids``: the ids of the new layers' objects, when the caller already has them."""
    info = targets[name]
    declared = _declared_start(info)
    if declared is not None:
        return declared
    if new_ids is None:
        new_ids = {id(targets[n].layer) for n in new_layers}
    end = _branch_end(info.layer, new_ids)
    if end is not None:
        if end is info.layer:
            return "zeroed", "new layer: ends a residual branch, starts at zero"
        return "kept-init", f"new layer in a residual branch that {end.name!r} zeroes"
    layer = info.layer
    if isinstance(layer, keras.layers.Dense) and _activation(layer) in _IDENTITY_ACTS:
        k = layer.kernel
        if k.shape[0] == k.shape[1]:
            src = _input_layer(layer)
            if _activation(layer) == "relu" and _activation(src) != "relu":
                return "identity", ("new layer: starts as the identity; NOT exact: ReLU of an input that may be "
                                    "negative")
            return "identity", "new layer: starts as the identity (Net2DeeperNet)"
    return "kept-init", (f"new layer: NOT function-preserving ({type(layer).__name__} is neither in a residual "
                         "branch nor an identity-capable Dense)")


def _declared_start(info: LayerInfo) -> tuple[str, str] | None:
    """A layer whose adapter declares residual branches inside its ``call`` (a transformer block):
    zeroing them is its start when its adapter says that makes it the identity."""
    branches = list(dict.fromkeys(p.branch for p in info.params if p.branch))
    adapter = find_adapter(info.layer)
    if not branches or adapter is None:
        return None
    identity, reason = adapter.new_block(info.layer) if adapter.new_block else (False, "")
    if identity:
        return "zeroed", f"new block: residual branches {', '.join(branches)} zeroed, starts as the identity ({reason})"
    return "kept-init", f"new block: NOT function-preserving: {reason or 'zeroed branches are not the identity'}"


def zeroed_params(info: LayerInfo) -> list[str]:
    """The params that make ``info``'s layer output zero (for a block: those of its residual branches)."""
    names = [p.name for p in info.params]
    if any(p.branch for p in info.params):
        return [p.name for p in info.params if p.branch]
    if isinstance(info.layer, keras.layers.MultiHeadAttention):
        return [n for n in names if n.startswith("attention_output/")]
    return names


def start_values(info: LayerInfo, action: str) -> dict[str, np.ndarray]:
    """``{param: value}`` for a new layer starting as ``action`` (``zeroed`` or ``identity``); under
    ``identity`` a normalisation's gain is one and its bias zero."""
    out = {}
    for p in info.params:
        dtype = np.dtype(p.variable.dtype)
        if action == "zeroed" and p.name in zeroed_params(info):
            out[p.name] = np.zeros(p.shape, dtype)
        elif action == "identity":
            one = p.name == "kernel" or (p.normalizes and p.name.rsplit("/", 1)[-1] == "gamma")
            out[p.name] = (np.eye(*p.shape, dtype=dtype) if p.name == "kernel" else np.ones(p.shape, dtype)) if one \
                else np.zeros(p.shape, dtype)
    return out


def _output_norm(info: LayerInfo) -> str | None:
    adapter = find_adapter(info.layer)
    return adapter.output_norm(info.layer) if adapter is not None and adapter.output_norm else None


def post_ln_chains(targets: dict[str, LayerInfo], new_layers: set[str]) -> list[tuple[str, list[str], str]]:
    """``(old block, [new blocks in order], norm prefix)`` for each run of new post-LN blocks that follows an
    old one (docs/DESIGN.md "keras_hub models"): the old block's output norm moves to the last new block,
    the old one and every other norm of the new blocks start at (1, 0), the new blocks' branches at zero."""
    by_id = {id(i.layer): n for n, i in targets.items()}
    out = []
    for name in new_layers:
        prev = _input_layer(targets[name].layer)
        prev_name = by_id.get(id(prev)) if prev is not None else None
        if prev_name is None or prev_name in new_layers or _output_norm(targets[name]) is None \
                or _output_norm(targets[prev_name]) is None:
            continue
        chain = [name]
        while True:
            nxt = [by_id.get(id(c)) for c in _consumers(targets[chain[-1]].layer)]
            nxt = [n for n in nxt if n in new_layers and _output_norm(targets[n]) is not None]
            if len(nxt) != 1 or nxt[0] in chain:
                break
            chain.append(nxt[0])
        out.append((prev_name, chain, _output_norm(targets[prev_name])))
    return sorted(out)
