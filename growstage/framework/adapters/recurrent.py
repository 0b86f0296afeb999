"""Adapters for Keras 3 recurrent layers: LSTM, GRU (both bias layouts),
SimpleRNN, and Bidirectional around any of them.

Gate axes are split into one block per gate (Keras order: LSTM i, f, c, o;
GRU z, r, h), so growing a layer pads every gate separately.  Param names
are attribute paths: ``cell/kernel``, ``forward_layer/cell/bias``.

Example::

    >>> import keras
    >>> from growstage.framework.adapters.base import find_adapter
    >>> l = keras.layers.LSTM(4); l.build((None, None, 3))
    >>> [(p.name, p.split) for p in find_adapter(l).params(l, [3])][:2]
    [('cell/kernel', [[3], [4, 4, 4, 4]]), ('cell/recurrent_kernel', [[4], [4, 4, 4, 4]])]
"""
from __future__ import annotations

import keras

from growstage.core.values import GATES, INPUT, OTHER, UNITS
from growstage.framework.adapters.base import ParamSpec, find_adapter, register_adapter

L = keras.layers
_N_GATES = {L.LSTM: 4, L.GRU: 3, L.SimpleRNN: 1}


def _fits(split, dim):
    return list(split) if sum(split) == dim else [dim]


def _rnn(n_gates: int):
    def params(layer, in_split):
        cell = layer.cell
        n = cell.units
        gates = [n] * n_gates
        role = GATES if n_gates > 1 else UNITS
        out = [
            ParamSpec("cell/kernel", cell.kernel, [_fits(in_split, cell.kernel.shape[0]), gates], (INPUT, role)),
            ParamSpec("cell/recurrent_kernel", cell.recurrent_kernel, [[n], gates], (UNITS, role)),
        ]
        b = getattr(cell, "bias", None)
        if b is not None:
            if len(b.shape) == 2:  # GRU reset_after: [input bias; recurrent bias]
                out.append(ParamSpec("cell/bias", b, [[1] * b.shape[0], gates], (OTHER, role)))
            else:
                out.append(ParamSpec("cell/bias", b, [gates], (role,)))
        return out
    return params


for _cls, _g in _N_GATES.items():
    register_adapter(_cls, _rnn(_g))


@register_adapter(L.Bidirectional, output_split=lambda layer, in_split, out_dim: (
    [layer.forward_layer.units, layer.backward_layer.units]
    if layer.merge_mode == "concat" and layer.forward_layer.units + layer.backward_layer.units == out_dim
    else [out_dim]))
def _bidirectional(layer, in_split):
    out = []
    for side in ("forward_layer", "backward_layer"):
        inner = getattr(layer, side)
        adapter = find_adapter(inner)
        if adapter is None:
            raise TypeError(f"Bidirectional around {type(inner).__name__} has no adapter")
        for spec in adapter.params(inner, in_split):
            spec.name = f"{side}/{spec.name}"
            out.append(spec)
    return out
