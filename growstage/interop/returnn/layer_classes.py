"""One builder per RETURNN layer class: the Keras layer(s) a dict entry becomes.

Each builder gets the layer's name, its options (``class``/``from`` and the options every class
takes removed) and its input tensor(s), and returns the output tensor; the Keras layer that holds
the params carries the dict's name.  Defaults are RETURNN's (TF backend, its default
``behavior_version``): conv without bias, batch_norm epsilon 1e-3 and momentum 0.99 (RETURNN's
update fraction; Keras's ``momentum`` is one minus it), layer_norm epsilon 1e-6, rec layers glorot
with zero biases (standardlstm: ``forget_bias`` 1.0 starts in the bias, as Keras stores it).

Example::

    >>> sorted(CLASSES)[:4]
    ['batch_norm', 'combine', 'conv', 'copy']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from growstage.core.errors import GrowstageError, did_you_mean
from growstage.interop.returnn import keras_layers as kl

L = keras.layers
Builder = Callable[[str, dict, list, "BuildContext"], Any]


class NetDictError(GrowstageError):
    """A RETURNN network dict that growstage cannot build: names the layer and the option."""


@dataclass
class BuildContext:
    extern_data: dict
    build_subnetwork: Callable[[str, dict, Any], Any]


@dataclass
class LayerClass:
    build: Builder
    options: tuple[str, ...]
    takes_list: bool = False  # gets every "from" tensor apart (combine) instead of their concatenation


CLASSES: dict[str, LayerClass] = {}
ACTIVATIONS = {None: None, "identity": None, "linear": None, "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
               "softmax": "softmax", "log_softmax": "log_softmax", "elu": "elu", "softplus": "softplus",
               "gelu": "gelu", "swish": "silu", "silu": "silu", "abs": kl.abs_activation}


def layer_class(name: str, *options: str, takes_list: bool = False) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        CLASSES[name] = LayerClass(fn, options, takes_list)
        return fn
    return deco


def fail(layer: str, msg: str) -> NetDictError:
    return NetDictError(f"layer {layer!r}: {msg}")


def activation(layer: str, opts: dict) -> Any:
    act = opts.get("activation")
    if act not in ACTIVATIONS:
        known = [a for a in ACTIVATIONS if a]
        raise fail(layer, f"activation {act!r} is not supported{did_you_mean(str(act), known)} "
                          f"(activations: {', '.join(known)})")
    return ACTIVATIONS[act]


def n_out(layer: str, opts: dict, ctx: BuildContext) -> int:
    if "n_out" in opts:
        return int(opts["n_out"])
    target = opts.get("target", "classes" if opts.get("loss") else None)  # RETURNN's default target
    if target is not None and target in ctx.extern_data and "dim" in ctx.extern_data[target]:
        return int(ctx.extern_data[target]["dim"])  # RETURNN: n_out from the target's dim
    raise fail(layer, "needs n_out (or a target with a dim in extern_data)")


@layer_class("linear", "n_out", "activation", "with_bias")
def _linear(name, opts, x, ctx):
    if "int" in str(x.dtype):
        raise fail(name, "linear on sparse data (RETURNN's embedding lookup) is not supported; "
                         "feed dense features")
    return L.Dense(n_out(name, opts, ctx), activation=activation(name, opts), use_bias=opts.get("with_bias", True),
                   name=name)(x)


@layer_class("softmax", "n_out", "with_bias")
def _softmax(name, opts, x, ctx):
    return L.Dense(n_out(name, opts, ctx), activation="softmax", use_bias=opts.get("with_bias", True), name=name)(x)


_LSTM_UNITS = {"lstm": "nativelstm2", "lstmp": "nativelstm2", "nativelstm": "nativelstm2",
               "nativelstm2": "nativelstm2", "standardlstm": "standardlstm"}


@layer_class("rec", "unit", "n_out", "direction", "unit_opts")
def _rec(name, opts, x, ctx):
    unit = str(opts.get("unit", "lstm"))
    if unit.lower() not in _LSTM_UNITS:
        raise fail(name, f"rec unit {unit!r} is not supported{did_you_mean(unit.lower(), _LSTM_UNITS)} "
                         f"(units: {', '.join(_LSTM_UNITS)})")
    direction = opts.get("direction", 1)
    if direction not in (1, -1):
        raise fail(name, f"direction {direction!r}: use 1 or -1")
    unit_opts = dict(opts.get("unit_opts") or {})
    forget_bias = 0.0
    if _LSTM_UNITS[unit.lower()] == "standardlstm":
        forget_bias = float(unit_opts.pop("forget_bias", 1.0))
        if forget_bias not in (0.0, 1.0):
            raise fail(name, f"unit_opts forget_bias {forget_bias}: growstage builds 0.0 or 1.0")
    if unit_opts:
        key = next(iter(unit_opts))
        raise fail(name, f"unit_opts option {key!r} is not supported for unit {unit!r}")
    lstm = L.LSTM(n_out(name, opts, ctx), return_sequences=True, go_backwards=direction == -1,
                  recurrent_initializer="glorot_uniform", unit_forget_bias=forget_bias == 1.0, name=name)
    y = lstm(x)
    # go_backwards returns the outputs last frame first; RETURNN's direction -1 keeps time order
    return kl.TimeReverse(name=f"{name}__reverse")(y) if direction == -1 else y


def _pair(value: Any, n: int, layer: str, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise fail(layer, f"{what} {value} has {len(value)} entries; filter_size has {n}")
    return value


@layer_class("conv", "filter_size", "padding", "strides", "dilation_rate", "n_out", "activation", "with_bias",
             "input_add_feature_dim")
def _conv(name, opts, x, ctx):
    if "filter_size" not in opts:
        raise fail(name, "conv needs filter_size")
    size = tuple(int(s) for s in opts["filter_size"])
    padding = str(opts.get("padding", "")).lower()
    if padding not in ("same", "valid"):
        raise fail(name, f"conv padding {opts.get('padding')!r}: use 'same' or 'valid'")
    if opts.get("input_add_feature_dim", False):
        x = kl.AddFeatureDim(name=f"{name}__add_feature_dim")(x)
    if len(x.shape) != len(size) + 2:
        raise fail(name, f"filter_size {size} needs an input of {len(size)} spatial axes and a feature axis; "
                         f"the input has shape {tuple(x.shape)} (input_add_feature_dim adds a feature axis)")
    conv = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}.get(len(size))
    if conv is None:
        raise fail(name, f"filter_size {size}: 1 to 3 spatial axes")
    return conv(n_out(name, opts, ctx), size, strides=_pair(opts.get("strides", 1), len(size), name, "strides"),
                padding=padding, dilation_rate=_pair(opts.get("dilation_rate", 1), len(size), name, "dilation_rate"),
                activation=activation(name, opts), use_bias=opts.get("with_bias", False), name=name)(x)


@layer_class("pad", "axes", "padding", "value", "mode")
def _pad(name, opts, x, ctx):
    axes = opts.get("axes")
    axes = axes[0] if isinstance(axes, (list, tuple)) and len(axes) == 1 else axes
    if str(axes).lower() not in ("t", "time"):
        raise fail(name, f"pad axes {axes!r}: growstage pads the time axis ('T')")
    if opts.get("mode", "constant") != "constant":
        raise fail(name, f"pad mode {opts['mode']!r}: growstage pads with a constant")
    pad = opts.get("padding")
    if isinstance(pad, (list, tuple)) and len(pad) == 1 and isinstance(pad[0], (list, tuple)):
        pad = pad[0]
    left, right = (pad, pad) if isinstance(pad, int) else tuple(pad)
    return kl.TimePad(left, right, opts.get("value", 0.0), name=name)(x)


@layer_class("merge_dims", "axes", "keep_order", "n_out")
def _merge_dims(name, opts, x, ctx):
    if opts.get("axes") not in ("except_time", "static"):
        raise fail(name, f"merge_dims axes {opts.get('axes')!r}: growstage merges 'except_time' / 'static'")
    y = kl.MergeDims(name=name)(x)
    if "n_out" in opts and int(opts["n_out"]) != y.shape[-1]:
        raise fail(name, f"n_out {opts['n_out']} but the merged axes hold {y.shape[-1]} features")
    return y


@layer_class("window", "window_size", "window_left", "window_right", "padding", "stride")
def _window(name, opts, x, ctx):
    size = int(opts["window_size"])
    if opts.get("padding", "same") != "same" or opts.get("stride", 1) != 1:
        raise fail(name, "window: growstage builds padding 'same' with stride 1")
    right = opts.get("window_right")
    left = opts.get("window_left")
    if right is None:
        right = size - left - 1 if left is not None else size // 2  # RETURNN's centring
    if left is None:
        left = size - right - 1
    if left + right + 1 != size:
        raise fail(name, f"window_left {left} + window_right {right} + 1 != window_size {size}")
    return kl.Window(size, left, right, name=name)(x)


@layer_class("copy")
def _copy(name, opts, x, ctx):
    return L.Identity(name=name)(x)


@layer_class("dropout")
def _dropout(name, opts, x, ctx):
    return L.Dropout(float(opts.get("dropout", 0.0)), name=name)(x)


_COMBINE = {"add": L.Add, "mul": L.Multiply, "average": L.Average}


@layer_class("combine", "kind", "activation", takes_list=True)
def _combine(name, opts, xs, ctx):
    kind = opts.get("kind")
    if kind not in _COMBINE:
        raise fail(name, f"combine kind {kind!r}{did_you_mean(str(kind), _COMBINE)} (kinds: {', '.join(_COMBINE)})")
    act = activation(name, opts)
    if len(xs) == 1:
        y = L.Identity(name=name if act is None else f"{name}__combine")(xs[0])
    else:
        y = _COMBINE[kind](name=name if act is None else f"{name}__combine")(xs)
    return y if act is None else L.Activation(act, name=name)(y)


@layer_class("layer_norm", "epsilon")
def _layer_norm(name, opts, x, ctx):
    return L.LayerNormalization(epsilon=float(opts.get("epsilon", 1e-6)), name=name)(x)


@layer_class("batch_norm", "epsilon", "momentum", "use_shift", "use_std", "param_version", "masked_time",
             "delay_sample_update")
def _batch_norm(name, opts, x, ctx):
    momentum = 1.0 - float(opts.get("momentum", 0.99))  # RETURNN: the update fraction; Keras: what is kept
    return L.BatchNormalization(epsilon=float(opts.get("epsilon", 1e-3)), momentum=momentum,
                                center=opts.get("use_shift", True), scale=opts.get("use_std", True), name=name)(x)


@layer_class("subnetwork", "subnetwork", "load_on_init", "concat_sources")
def _subnetwork(name, opts, x, ctx):
    if not opts.get("concat_sources", True):
        raise fail(name, "subnetwork concat_sources=False is not supported (the sources are concatenated)")
    if not isinstance(opts.get("subnetwork"), dict):
        raise fail(name, "subnetwork needs a 'subnetwork' dict")
    return ctx.build_subnetwork(name, opts, x)
