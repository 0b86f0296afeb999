"""Per-layer-type conversions between Keras 3 and ``torch.nn`` parameter layouts.  numpy only.

Each Keras layer type maps to a ``torch.nn`` module; :func:`export_layer` turns the layer's
values (``{keras_param: array}``) into that module's tensors, :func:`import_layer` goes back.
Every move is exact (transposes, reshapes and gate-block reorders move bits); the one place
with arithmetic is importing an LSTM/RNN whose ``bias_hh`` is not zero (Keras keeps one bias,
so the two are summed, and a note says so).

=====================  =================================  ==========================================
Keras                  torch.nn                           conversion
=====================  =================================  ==========================================
Dense                  Linear                             ``weight = kernel.T``
Conv1D/2D/3D           Conv1d/2d/3d                       kernel ``(*k, in, out) -> (out, in, *k)``
Embedding              Embedding                          ``weight = embeddings``
LayerNormalization     LayerNorm                          gamma, beta -> weight, bias (eps noted)
BatchNormalization     BatchNorm1d/2d/3d                  + running stats, ``num_batches_tracked=0``
LSTM                   LSTM                               gates i,f,c,o = i,f,g,o; ``bias_hh = 0``
GRU (reset_after)      GRU                                gates z,r,h -> r,z,n; bias rows -> ih, hh
SimpleRNN              RNN                                transposed; ``bias_hh = 0``
Bidirectional          LSTM/GRU/RNN(bidirectional=True)   backward layer -> ``*_l0_reverse``
MultiHeadAttention     MultiheadAttention                 packed ``in_proj_weight``, ``out_proj``
=====================  =================================  ==========================================

Example::

    >>> import numpy as np
    >>> out, notes = export_layer("Dense", {"kernel": np.arange(6.).reshape(2, 3), "bias": np.zeros(3)})
    >>> [(t.name, t.value.shape, t.how) for t in out][0]
    ('weight', (3, 2), 'transposed')
    >>> from growstage.interop.torch_import import import_layer  # the inverse
    >>> import_layer("Dense", {t.name: t.value for t in out}, {"kernel": (2, 3), "bias": (3,)})[0]["kernel"][1]
    array([3., 4., 5.])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from growstage.core.errors import GrowstageError

KINDS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "Embedding", "LayerNormalization", "BatchNormalization",
         "LSTM", "GRU", "SimpleRNN", "Bidirectional", "MultiHeadAttention")
# gate blocks: torch block j is Keras block _GATES[kind][j] (GRU: Keras z,r,h -> torch r,z,n)
_GATES = {"LSTM": (0, 1, 2, 3), "GRU": (1, 0, 2), "SimpleRNN": (0,)}
_RNN_BY_GATES = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}


class TorchLayoutError(GrowstageError, ValueError):
    """A layer has no ``torch.nn`` equivalent, or a torch tensor it needs is missing or mis-shaped."""


@dataclass
class TorchTensor:
    """One tensor of a torch module: its name inside the module, value, Keras source param, what was done."""

    name: str
    value: np.ndarray
    source: str | None
    how: str


def _reorder(a: np.ndarray, order: tuple[int, ...], axis: int = -1) -> np.ndarray:
    if order == tuple(range(len(order))):
        return a
    blocks = np.split(a, len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


def _t(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _dense(p):
    out = [TorchTensor("weight", _t(p["kernel"]), "kernel", "transposed")]
    return out + ([TorchTensor("bias", p["bias"], "bias", "")] if "bias" in p else [])


def _conv(p):
    k = p["kernel"]
    nd = k.ndim - 2
    perm = (nd + 1, nd) + tuple(range(nd))
    how = "(*k, in, out) -> (out, in, *k)"
    out = [TorchTensor("weight", np.ascontiguousarray(k.transpose(perm)), "kernel", how)]
    return out + ([TorchTensor("bias", p["bias"], "bias", "")] if "bias" in p else [])


def _renamed(mapping: dict[str, str]) -> Callable:
    def convert(p):
        return [TorchTensor(t, p[k], k, "") for k, t in mapping.items() if k in p]
    return convert


_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_LN = {"gamma": "weight", "beta": "bias"}


def _batchnorm(p):
    out = _renamed(_BN)(p)
    # torch's BatchNorm keeps a step counter in its state_dict; Keras keeps none
    return out + [TorchTensor("num_batches_tracked", np.zeros((), np.int64), None, "torch's counter; Keras keeps none")]


def rnn_kind(recurrent_kernel_shape: tuple[int, ...]) -> str:
    """LSTM, GRU or SimpleRNN from the shape of a ``recurrent_kernel`` ``(n, gates * n)``."""
    n, m = recurrent_kernel_shape
    kind = _RNN_BY_GATES.get(m // n) if m % n == 0 else None
    if kind is None:
        raise TorchLayoutError(f"recurrent_kernel {recurrent_kernel_shape} is not (n, 4n), (n, 3n) or (n, n)")
    return kind


def _rnn(p, prefix: str, suffix: str) -> list[TorchTensor]:
    k, u = p[prefix + "kernel"], p[prefix + "recurrent_kernel"]
    kind = rnn_kind(u.shape)
    order = _GATES[kind]
    how = "transposed" + ("" if kind != "GRU" else "; gates z,r,h -> r,z,n")
    out = [TorchTensor(f"weight_ih_{suffix}", _t(_reorder(k, order)), prefix + "kernel", how),
           TorchTensor(f"weight_hh_{suffix}", _t(_reorder(u, order)), prefix + "recurrent_kernel", how)]
    b = p.get(prefix + "bias")
    if b is None:
        return out  # use_bias=False: torch's bias=False
    if kind == "GRU":
        if b.ndim != 2:
            raise TorchLayoutError("a GRU with reset_after=False applies the reset gate before the recurrent "
                                   "matmul; torch.nn.GRU has no such variant: rebuild the Keras GRU with "
                                   "reset_after=True (the Keras 3 default)")
        gates = "; gates z,r,h -> r,z,n"
        return out + [TorchTensor(f"bias_ih_{suffix}", _reorder(b[0], order), prefix + "bias", "row 0" + gates),
                      TorchTensor(f"bias_hh_{suffix}", _reorder(b[1], order), prefix + "bias", "row 1" + gates)]
    return out + [TorchTensor(f"bias_ih_{suffix}", b, prefix + "bias", ""),
                  TorchTensor(f"bias_hh_{suffix}", np.zeros_like(b), None, "Keras keeps one bias: torch's second is 0")]


def _bidirectional(p):
    return _rnn(p, "forward_layer/cell/", "l0") + _rnn(p, "backward_layer/cell/", "l0_reverse")


def mha_layout(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, str]:
    """``packed`` | ``kdim`` | ``linear`` and why, from Keras MultiHeadAttention kernel shapes."""
    e, h, d = shapes["query/kernel"]
    ek, ev, dv, eo = shapes["key/kernel"][0], shapes["value/kernel"][0], shapes["value/kernel"][2], \
        shapes["attention_output/kernel"][2]
    if h * d == e == eo and dv == d:
        if ek == ev == e:
            return "packed", ""
        return "kdim", f"key/value dims ({ek}, {ev}) differ from embed_dim {e}: nn.MultiheadAttention(kdim=, vdim=)"
    return "linear", (f"no nn.MultiheadAttention: it needs key_dim*heads == embed_dim == output dim and "
                      f"value_dim == key_dim (here {h}x{d}, {e}, {eo}, {dv}); exported as nn.Linear "
                      "q_proj/k_proj/v_proj/out_proj, heads split head-major (view(..., heads, dim))")


def _mha(p):
    layout, note = mha_layout({k: v.shape for k, v in p.items()})
    flat = {n: _t(p[f"{n}/kernel"].reshape(p[f"{n}/kernel"].shape[0], -1)) for n in ("query", "key", "value")}
    bias = {n: p[f"{n}/bias"].reshape(-1) for n in ("query", "key", "value") if f"{n}/bias" in p}
    o = p["attention_output/kernel"]
    out_w = TorchTensor("out_proj.weight", _t(o.reshape(-1, o.shape[-1])), "attention_output/kernel",
                        "(heads, dim, out) -> (out, heads*dim)")
    out_b = [TorchTensor("out_proj.bias", p["attention_output/bias"], "attention_output/bias", "")] \
        if "attention_output/bias" in p else []
    how = "(in, heads, dim) -> (heads*dim, in)"
    if layout == "linear":
        out = []
        for n, t in (("query", "q"), ("key", "k"), ("value", "v")):
            out.append(TorchTensor(f"{t}_proj.weight", flat[n], f"{n}/kernel", how))
            if n in bias:
                out.append(TorchTensor(f"{t}_proj.bias", bias[n], f"{n}/bias", "(heads, dim) -> (heads*dim,)"))
        return out + [out_w] + out_b, note
    if layout == "packed":
        w = [TorchTensor("in_proj_weight", np.concatenate([flat[n] for n in ("query", "key", "value")]),
                         "query/kernel+key/kernel+value/kernel", "q, k, v " + how + ", stacked")]
    else:
        w = [TorchTensor(f"{t}_proj_weight", flat[n], f"{n}/kernel", how)
             for n, t in (("query", "q"), ("key", "k"), ("value", "v"))]
    if bias:
        w.append(TorchTensor("in_proj_bias", np.concatenate([bias[n] for n in ("query", "key", "value")]),
                             "query/bias+key/bias+value/bias", "(heads, dim) -> (heads*dim,), stacked"))
    return w + [out_w] + out_b, note


_EXPORT: dict[str, Callable] = {
    "Dense": _dense, "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv,
    "Embedding": _renamed({"embeddings": "weight"}), "LayerNormalization": _renamed(_LN),
    "BatchNormalization": _batchnorm, "LSTM": lambda p: _rnn(p, "cell/", "l0"),
    "GRU": lambda p: _rnn(p, "cell/", "l0"), "SimpleRNN": lambda p: _rnn(p, "cell/", "l0"),
    "Bidirectional": _bidirectional,
}


def export_layer(kind: str, params: Mapping[str, np.ndarray]) -> tuple[list[TorchTensor], list[str]]:
    """The torch module's tensors for one Keras layer of type ``kind``, and notes."""
    if kind == "MultiHeadAttention":
        out, note = _mha(dict(params))
        return out, [note] if note else []
    if kind not in _EXPORT:
        raise TorchLayoutError(f"no torch.nn conversion for Keras {kind}; known: {', '.join(KINDS)}")
    try:
        return _EXPORT[kind](dict(params)), []
    except KeyError as e:
        raise TorchLayoutError(f"a Keras {kind} needs param {e.args[0]!r}; has {sorted(params)}") from None


__all__ = ["KINDS", "TorchLayoutError", "TorchTensor", "export_layer", "mha_layout", "rnn_kind"]
