"""torch -> Keras: the inverse of :mod:`growstage.interop.torch_layouts`, one layer at a time.  numpy only.

``import_layer(kind, tensors, shapes)`` reads the torch module's tensors (names relative to the
module) and returns the Keras layer's values shaped as ``shapes`` (the target layer's params).

Example::

    >>> import numpy as np
    >>> vals, used, notes = import_layer("Embedding", {"weight": np.eye(3)}, {"embeddings": (3, 3)})
    >>> vals["embeddings"].shape, used
    ((3, 3), ['weight'])
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from growstage.core.errors import did_you_mean
from growstage.interop.torch_layouts import _BN, _GATES, _LN, TorchLayoutError, _reorder, mha_layout, rnn_kind


class _Taker:
    """Reads a module's tensors by name and remembers which it read: the rest are unused."""

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self.tensors, self.used = tensors, []

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise TorchLayoutError(f"missing torch tensor {name!r}{did_you_mean(name, self.tensors)}")
        self.used.append(name)
        return np.asarray(self.tensors[name])


def _check(value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if value.shape != tuple(shape):
        raise TorchLayoutError(f"{what} gives shape {value.shape}; the Keras param is {tuple(shape)}")
    return np.ascontiguousarray(value)


def _linear(t: _Taker, shapes, out: dict, notes: list) -> None:
    out["kernel"] = _check(t.take("weight").T, shapes["kernel"], "weight.T")
    if "bias" in shapes:
        out["bias"] = t.take("bias")


def _conv(t: _Taker, shapes, out: dict, notes: list) -> None:
    w = t.take("weight")
    nd = w.ndim - 2
    out["kernel"] = _check(w.transpose(tuple(range(2, nd + 2)) + (1, 0)), shapes["kernel"], "weight (out, in, *k)")
    if "bias" in shapes:
        out["bias"] = t.take("bias")


def _renamed(mapping: dict[str, str]):
    def convert(t: _Taker, shapes, out: dict, notes: list) -> None:
        for k, name in mapping.items():
            if k in shapes:
                out[k] = t.take(name)
    return convert


def _batchnorm(t: _Taker, shapes, out: dict, notes: list) -> None:
    _renamed(_BN)(t, shapes, out, notes)
    if "num_batches_tracked" in t:
        t.take("num_batches_tracked")
        notes.append("num_batches_tracked dropped (Keras keeps no counter)")


def _rnn(t: _Taker, shapes, out: dict, notes: list, prefix: str, suffix: str) -> None:
    kind = rnn_kind(shapes[prefix + "recurrent_kernel"])
    order = _GATES[kind]  # every order used is its own inverse (identity, or GRU's swap of blocks 0 and 1)
    for k, name in (("kernel", "ih"), ("recurrent_kernel", "hh")):
        w = _reorder(t.take(f"weight_{name}_{suffix}").T, order)
        out[prefix + k] = _check(w, shapes[prefix + k], f"weight_{name}_{suffix}.T")
    if prefix + "bias" not in shapes:
        return
    b_ih, b_hh = _reorder(t.take(f"bias_ih_{suffix}"), order), _reorder(t.take(f"bias_hh_{suffix}"), order)
    if kind == "GRU":
        if len(shapes[prefix + "bias"]) != 2:
            raise TorchLayoutError("the Keras GRU has reset_after=False, which torch.nn.GRU cannot express: "
                                   "build it with reset_after=True (the Keras 3 default)")
        out[prefix + "bias"] = _check(np.stack([b_ih, b_hh]), shapes[prefix + "bias"], "bias_ih, bias_hh")
    elif not b_hh.any():
        out[prefix + "bias"] = b_ih  # the usual case (our own export): exact
    else:
        out[prefix + "bias"] = b_ih + b_hh
        notes.append(f"{prefix}bias = bias_ih_{suffix} + bias_hh_{suffix} (Keras keeps one bias; float sum)")


def _bidirectional(t: _Taker, shapes, out: dict, notes: list) -> None:
    _rnn(t, shapes, out, notes, "forward_layer/cell/", "l0")
    _rnn(t, shapes, out, notes, "backward_layer/cell/", "l0_reverse")


def _mha(t: _Taker, shapes, out: dict, notes: list) -> None:
    layout, _ = mha_layout(shapes)
    names = ("query", "key", "value")
    if layout == "packed":
        ws = np.split(t.take("in_proj_weight"), 3)
    elif layout == "kdim":
        ws = [t.take(f"{n[0]}_proj_weight") for n in names]
    else:
        ws = [t.take(f"{n[0]}_proj.weight") for n in names]
    for n, w in zip(names, ws):
        out[f"{n}/kernel"] = _check(w.T.reshape(shapes[f"{n}/kernel"]), shapes[f"{n}/kernel"], f"{n} weight")
    if "query/bias" in shapes:
        bs = np.split(t.take("in_proj_bias"), 3) if layout != "linear" else [t.take(f"{n[0]}_proj.bias") for n in names]
        for n, b in zip(names, bs):
            out[f"{n}/bias"] = b.reshape(shapes[f"{n}/bias"])
    o = t.take("out_proj.weight")
    out["attention_output/kernel"] = o.T.reshape(shapes["attention_output/kernel"])
    if "attention_output/bias" in shapes:
        out["attention_output/bias"] = t.take("out_proj.bias")


_IMPORT = {
    "Dense": _linear, "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv,
    "Embedding": _renamed({"embeddings": "weight"}), "LayerNormalization": _renamed(_LN),
    "BatchNormalization": _batchnorm, "Bidirectional": _bidirectional, "MultiHeadAttention": _mha,
    **{k: (lambda t, s, o, n: _rnn(t, s, o, n, "cell/", "l0")) for k in ("LSTM", "GRU", "SimpleRNN")},
}


def import_layer(kind: str, tensors: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]]
                 ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """``(keras values, torch names read, notes)`` for one Keras layer of type ``kind``."""
    if kind not in _IMPORT:
        raise TorchLayoutError(f"no torch.nn conversion for Keras {kind}; known: {', '.join(_IMPORT)}")
    taker, out, notes = _Taker(tensors), {}, []
    _IMPORT[kind](taker, {k: tuple(v) for k, v in shapes.items()}, out, notes)
    for k, shape in shapes.items():
        if k in out:
            out[k] = _check(np.ascontiguousarray(out[k]), shape, k)
    return out, taker.used, notes
