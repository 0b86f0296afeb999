"""Adapters for Keras 3 feed-forward layers: Dense, EinsumDense, Conv, Embedding,
normalisation and MultiHeadAttention.

Example::

    >>> import keras
    >>> from growstage.framework.adapters.base import find_adapter
    >>> d = keras.layers.Dense(3); d.build((None, 8))
    >>> [(p.name, p.split) for p in find_adapter(d).params(d, [4, 4])]
    [('kernel', [[4, 4], [3]]), ('bias', [[3]])]
"""
from __future__ import annotations

import keras

from growstage.core.values import (HEAD_DIM, HEADS, INPUT, INPUT_HEAD_DIM, INPUT_HEADS, OTHER, QUERY_HEAD_DIM, SPATIAL,
                                   UNITS, VOCAB)
from growstage.framework.adapters.base import ParamSpec, register_adapter

L = keras.layers


def _fits(split: list[int], dim: int) -> list[int]:
    return list(split) if sum(split) == dim else [dim]


@register_adapter(L.Dense)
def _dense(layer, in_split):
    k = layer.kernel
    out = [ParamSpec("kernel", k, [_fits(in_split, k.shape[0]), [k.shape[1]]], (INPUT, UNITS))]
    if layer.bias is not None:
        out.append(ParamSpec("bias", layer.bias, [[layer.bias.shape[0]]], (UNITS,)))
    return out


@register_adapter(L.EinsumDense)
def _einsum_dense(layer, in_split):
    eq = layer.equation.replace(" ", "")
    lhs, out_spec = eq.split("->")
    in_spec, k_spec = lhs.split(",")
    k = layer.kernel
    split, roles = [], []
    for letter, dim in zip(k_spec, k.shape):
        if letter in in_spec:
            roles.append(INPUT)
            split.append(_fits(in_split, dim) if letter == in_spec[-1] else [dim])
        else:
            roles.append(UNITS if letter in out_spec else OTHER)
            split.append([dim])
    out = [ParamSpec("kernel", k, split, tuple(roles))]
    if layer.bias is not None:
        out.append(ParamSpec("bias", layer.bias, [[d] for d in layer.bias.shape], (UNITS,) * len(layer.bias.shape)))
    return out


def _conv(layer, in_split):
    k = layer.kernel
    *spatial, cin, cout = k.shape
    in_axis = _fits(in_split, cin) if getattr(layer, "groups", 1) == 1 else [cin]
    out = [ParamSpec("kernel", k, [[d] for d in spatial] + [in_axis, [cout]], (SPATIAL,) * len(spatial) + (INPUT, UNITS))]
    if layer.bias is not None:
        out.append(ParamSpec("bias", layer.bias, [[cout]], (UNITS,)))
    return out


for _cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    register_adapter(_cls, _conv)


@register_adapter(L.Embedding)
def _embedding(layer, in_split):
    e = layer.embeddings
    return [ParamSpec("embeddings", e, [[e.shape[0]], [e.shape[1]]], (VOCAB, UNITS))]


if hasattr(L, "ReversibleEmbedding"):  # Keras >= 3.13; keras_hub's subclasses it
    @register_adapter(L.ReversibleEmbedding)
    def _reversible_embedding(layer, in_split):
        # tied: ``embeddings`` is also the output projection (one param, two readers); untied: the
        # output projection ``reverse_embeddings`` (hidden, vocab) reads the hidden units
        out = _embedding(layer, in_split)
        r = getattr(layer, "reverse_embeddings", None)
        if r is not None and not layer.tie_weights:
            out.append(ParamSpec("reverse_embeddings", r, [[r.shape[0]], [r.shape[1]]], (INPUT, VOCAB)))
        return out


def _passthrough(layer, in_split, out_dim):
    return _fits(in_split, out_dim)


def _norm(names):
    def params(layer, in_split):
        out = []
        for n in names:
            v = getattr(layer, n, None)
            if v is None:
                continue
            if len(v.shape) == 1:
                out.append(ParamSpec(n, v, [_fits(in_split, v.shape[0])], (UNITS,), normalizes=n in ("gamma", "beta")))
            else:
                out.append(ParamSpec(n, v, [[d] for d in v.shape], (OTHER,) * len(v.shape)))
        return out
    return params


register_adapter(L.LayerNormalization, _norm(("gamma", "beta")), output_split=_passthrough)
register_adapter(L.BatchNormalization, _norm(("gamma", "beta", "moving_mean", "moving_variance")), output_split=_passthrough)


@register_adapter(L.MultiHeadAttention)
def _mha(layer, in_split):
    out = []
    parts = (("query", layer._query_dense), ("key", layer._key_dense), ("value", layer._value_dense))
    for prefix, dense in parts:
        k = dense.kernel
        # The graph gives the split of the query input only; key and value may
        # read other tensors, so their input axes stay whole.
        first = _fits(in_split, k.shape[0]) if prefix == "query" else [k.shape[0]]
        # the scores read the query's head size (scaled by 1/sqrt of it): a consumer axis
        dim = QUERY_HEAD_DIM if prefix == "query" else HEAD_DIM
        out.append(ParamSpec(f"{prefix}/kernel", k, [first, [k.shape[1]], [k.shape[2]]], (INPUT, HEADS, dim)))
        if dense.bias is not None:
            b = dense.bias
            out.append(ParamSpec(f"{prefix}/bias", b, [[b.shape[0]], [b.shape[1]]], (HEADS, dim)))
    o = layer._output_dense
    k = o.kernel
    out.append(ParamSpec("attention_output/kernel", k, [[k.shape[0]], [k.shape[1]], [k.shape[2]]], (INPUT_HEADS, INPUT_HEAD_DIM, UNITS)))
    if o.bias is not None:
        out.append(ParamSpec("attention_output/bias", o.bias, [[o.bias.shape[0]]], (UNITS,)))
    return out
