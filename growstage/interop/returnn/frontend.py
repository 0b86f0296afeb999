"""A RETURNN network dict as a Keras 3 functional model whose layer names are the dict's names.

``build_model(net_dict, extern_data)``: every entry becomes the Keras layer(s) of
:mod:`~growstage.interop.returnn.layer_classes`; ``"from"`` (a name, a list, ``"data"``,
``"data:<key>"``; default ``"data"``) wires them, several sources concatenated on the feature
axis as in RETURNN.  The model's outputs are the layers with a ``loss``, ``is_output_layer`` or
the name ``output``; layers no output reads are checked but not built (as in RETURNN).  Keys starting with
``#`` (per-stage options of a pretraining dict) are not layers.  A subnetwork is a nested Keras
model of that name (its params are ``sub/inner/kernel``); ``load_on_init`` loads it from a
checkpoint when the model is built (any format growstage reads; a TF1 checkpoint is read as
RETURNN wrote it), and the report stays available from :func:`load_reports`.  Every option of
every layer is used or refused: an unknown class or option is a :class:`NetDictError` naming the
layer and the option.  Sequences are taken at full length (no masks for padded frames).

Example::

    >>> net = {"lstm_fw": {"class": "rec", "unit": "nativelstm2", "n_out": 4, "direction": 1, "from": "data"},
    ...        "lstm_bw": {"class": "rec", "unit": "nativelstm2", "n_out": 4, "direction": -1, "from": "data"},
    ...        "output": {"class": "softmax", "loss": "ce", "from": ["lstm_fw", "lstm_bw"]}}
    >>> m = build_model(net, {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}})
    >>> sorted(l.name for l in m.layers if l.weights), tuple(m.output.shape)
    (['lstm_bw', 'lstm_fw', 'output'], (None, None, 5))
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Callable, Mapping

import keras

from growstage.core.errors import did_you_mean
from growstage.interop.returnn.layer_classes import CLASSES, BuildContext, NetDictError, fail
from growstage.interop.returnn.validate import check_extern, check_options, check_sources

# what a builder may raise on a value its checks let through: still the layer's NetDictError
_BUILD_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)

# custom_param_importer: not for building; a Schedule takes a layer's mode string as that layer's transfer mode
COMMON = ("class", "from", "trainable", "is_output_layer", "loss", "target", "dropout", "custom_param_importer")
# RETURNN's LayerBase options that every class accepts and that change no param: the output's size is
# checked against what the layer builds, the loss options belong to training (no Keras param)
LAYER_BASE = ("n_out", "out_type", "loss_scale", "loss_opts")
LOAD_KEYS = ("filename", "ignore_missing", "ignore_params", "ignore_params_prefixes")
EXTERN_KEYS = ("dim", "shape", "sparse", "dtype", "available_for_inference")
_REPORTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _sources(name: str, spec: Mapping[str, Any]) -> list[str]:
    return check_sources(name, spec.get("from", ["data"]))


def _input(key: str, extern_data: Mapping[str, Any]) -> Any:
    if key not in extern_data:
        raise NetDictError(f"extern_data has no {key!r}{did_you_mean(key, extern_data)}; give its dim or shape")
    check_extern(key, extern_data[key])
    spec = dict(extern_data[key])
    bad = [k for k in spec if k not in EXTERN_KEYS]
    if bad:
        raise NetDictError(f"extern_data[{key!r}]: unknown option {bad[0]!r}{did_you_mean(bad[0], EXTERN_KEYS)}")
    if "dim" not in spec and "shape" not in spec:
        raise NetDictError(f"extern_data[{key!r}] needs a 'dim' (features, or classes when sparse) or a 'shape'")
    sparse = spec.get("sparse", False)
    shape = tuple(spec["shape"]) if "shape" in spec else ((None,) if sparse else (None, int(spec["dim"])))
    return keras.Input(shape, name=key, dtype=spec.get("dtype", "int32" if sparse else "float32"))


class _Graph:
    """One network dict being built: the top level, or a subnetwork with its ``data`` given."""

    def __init__(self, net: Mapping[str, Any], extern_data: Mapping[str, Any], data: Any = None,
                 path: str = ""):
        bad = [k for k in net if not isinstance(k, str)]
        if bad:
            raise NetDictError(f"network {path or 'dict'}: layer name {bad[0]!r} is not a string")
        self.net = {k: v for k, v in net.items() if not k.startswith("#")}
        self.extern_data, self.data, self.path = extern_data, data, path
        self.inputs: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}
        self.building: list[str] = []
        self.frozen: list[str] = []
        self.loads: list[tuple[str, Any, Any]] = []  # (subnetwork name, sub-model, load_on_init)
        self.ctx = BuildContext(dict(extern_data), self._subnetwork)

    def ref(self, name: str, src: str) -> Any:
        if src == "data" or src.startswith("data:"):
            key = "data" if src == "data" else src[5:]
            if self.data is not None:
                if key != "data":
                    raise fail(self.path + name, f"reads {src!r}; a subnetwork sees its input as 'data' only")
                return self.data
            if key not in self.inputs:
                self.inputs[key] = _input(key, self.extern_data)
            return self.inputs[key]
        if src.startswith("base:"):
            raise fail(self.path + name, f"reads {src!r}: 'base:' references are not supported (pass the layer in "
                                         f"the subnetwork's 'from')")
        if src not in self.net:
            raise fail(self.path + name, f"reads unknown layer {src!r}{did_you_mean(src, self.net)}")
        return self.layer(src)

    def layer(self, name: str) -> Any:
        """The output of layer ``name``, its sources built first: depth-first with a stack of its own,
        so a chain of thousands of layers needs no recursion (cycles are named)."""
        stack = [name]
        while stack:
            top = stack[-1]
            if top in self.tensors:
                stack.pop()
                continue
            if top not in self.building:
                self.building.append(top)
            todo = [s for s in _sources(self.path + top, self._spec(top)) if self._is_layer(s)]
            for src in todo:
                if src not in self.net:
                    raise fail(self.path + top, f"reads unknown layer {src!r}{did_you_mean(src, self.net)}")
                if src not in self.tensors and src in self.building:
                    cycle = self.building[self.building.index(src):] + [src]
                    raise NetDictError(f"layers {' -> '.join(cycle)} form a cycle")
            waiting = [s for s in todo if s not in self.tensors]
            if waiting:
                stack.append(waiting[0])
                continue
            self.tensors[top] = self._build(top)
            self.building.remove(top)
            stack.pop()
        return self.tensors[name]

    def _spec(self, name: str) -> Mapping[str, Any]:
        if name not in self.net:
            raise NetDictError(f"no layer {name!r}{did_you_mean(name, self.net)}")
        self.check(name)
        return self.net[name]

    def _is_layer(self, src: str) -> bool:
        return not (src == "data" or src.startswith(("data:", "base:")))

    def _build(self, name: str) -> Any:
        spec = self.net[name]
        cls = self.check(name)
        xs = [self.ref(name, s) for s in _sources(self.path + name, spec)]
        if spec["class"] != "dropout" and spec.get("dropout"):  # RETURNN: dropout on the layer's input
            xs = [keras.layers.Dropout(float(spec["dropout"]), name=f"{name}__dropout{i or ''}")(x)
                  for i, x in enumerate(xs)]
        if not cls.takes_list and len(xs) > 1:
            xs = [keras.layers.Concatenate(axis=-1, name=f"{name}__from")(xs)]
        opts = {k: v for k, v in spec.items() if k not in ("class", "from")}
        try:
            y = cls.build(name, opts, xs if cls.takes_list else xs[0], self.ctx)
        except NetDictError:
            raise
        except _BUILD_ERRORS as e:
            raise fail(self.path + name, f"cannot build it ({type(e).__name__}: {' '.join(str(e).split())[:300]})") \
                from None
        _check_out_size(self.path + name, spec, cls, y)
        if spec.get("trainable", True) is False:
            self.frozen.append(name)
        return y

    def check(self, name: str) -> Any:
        """The layer class of entry ``name``, after checking its class and options (no tensors built)."""
        spec = self.net[name]
        if not isinstance(spec, Mapping) or "class" not in spec:
            raise fail(self.path + name, "needs a dict with a 'class'")
        check_options(self.path + name, spec)  # types and ranges first: nothing wrong reaches Keras
        cls = CLASSES.get(spec["class"])
        if cls is None:
            raise fail(self.path + name, f"unknown class {spec['class']!r}{did_you_mean(str(spec['class']), CLASSES)} "
                                         f"(classes: {', '.join(sorted(CLASSES))})")
        allowed = set(COMMON) | set(LAYER_BASE) | set(cls.options)
        bad = [k for k in spec if k not in allowed]
        if bad:
            raise fail(self.path + name, f"option {bad[0]!r} is not supported for class {spec['class']!r}"
                                         f"{did_you_mean(bad[0], allowed)}")
        return cls

    def outputs(self) -> list[str]:
        if self.data is not None:
            return ["output"]  # a subnetwork's value is its 'output' layer; losses inside it are not outputs
        for n in self.net:
            self.check(n)
        outs = [n for n, s in self.net.items() if s.get("loss") or s.get("is_output_layer") or n == "output"]
        if not outs:
            raise NetDictError(f"network {self.path or 'dict'} has no output layer: name one 'output' or give it "
                               f"a loss or is_output_layer=True")
        return outs

    def model(self, name: str, inputs: list) -> keras.Model:
        outs = [self.layer(n) for n in self.outputs()]
        for layer_name in self.net:  # layers no output reads are not built (as in RETURNN), but checked all the same
            self.check(layer_name)
        model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outs if len(outs) > 1 else outs[0], name=name)
        for layer in self.frozen:
            model.get_layer(layer).trainable = False
        return model

    def _subnetwork(self, name: str, opts: dict, x: Any) -> Any:
        inner_input = keras.Input(tuple(x.shape[1:]), name=f"{name}__data", dtype=x.dtype)
        inner = _Graph(opts["subnetwork"], self.extern_data, inner_input, path=f"{self.path}{name}/")
        if "output" not in inner.net:
            raise fail(self.path + name, "a subnetwork needs an 'output' layer")
        sub = inner.model(name, [inner_input])
        self.loads.extend(inner.loads)
        if opts.get("load_on_init") is not None:
            self.loads.append((self.path + name, sub, opts["load_on_init"]))
        return sub(x)


def _check_out_size(where: str, spec: Mapping[str, Any], cls: Any, y: Any) -> None:
    """RETURNN's ``n_out`` / ``out_type`` on a class that does not take them: they must say what it builds."""
    said = []
    if "n_out" in spec and "n_out" not in cls.options:
        said.append(("n_out", spec["n_out"]))
    out_type = spec.get("out_type")
    if out_type is not None:
        if not isinstance(out_type, Mapping):
            raise fail(where, f"out_type must be a dict (RETURNN's Data options), not {type(out_type).__name__}")
        if "dim" in out_type:
            said.append(("out_type's dim", out_type["dim"]))
    size = y.shape[-1]
    for what, value in said:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(where, f"{what} must be an int, not {value!r}")
        if size is not None and value != size:
            raise fail(where, f"{what} is {value}, but the layer's output has {size} features")


def _load(where: str, sub: Any, load_on_init: Any) -> Any:
    from growstage.engine.sources import open_checkpoint
    from growstage.engine.writing import transfer
    from growstage.interop.returnn.names import from_returnn

    opts = dict(load_on_init) if isinstance(load_on_init, Mapping) else {"filename": load_on_init}
    bad = [k for k in opts if k not in LOAD_KEYS]
    if bad:
        raise fail(where, f"load_on_init option {bad[0]!r} is not supported{did_you_mean(bad[0], LOAD_KEYS)}")
    if not isinstance(opts.get("filename"), (str, os.PathLike)):
        raise fail(where, "load_on_init needs a filename")
    rules = {k: list(opts[k]) for k in ("ignore_params", "ignore_params_prefixes") if opts.get(k)}
    with open_checkpoint(opts["filename"], model=sub) as raw:
        reader = from_returnn(raw) if raw.format == "tf1" else raw  # what RETURNN writes: its names and layouts
        # the checkpoint may hold a whole network: what the subnetwork lacks is not used (RETURNN's behaviour)
        report = transfer(reader, sub, ignore_unused=True, ignore_missing=bool(opts.get("ignore_missing", False)),
                          rules=rules or None)
    report.notes.insert(0, f"subnetwork {where!r}: load_on_init from {reader.path}")
    return report


def build_model(net_dict: Any, extern_data: Mapping[str, Any] | None = None, *,
                name: str = "returnn_net") -> keras.Model:
    """Build a RETURNN network dict as a Keras model (see the module doc).

    ``net_dict`` may also be a :class:`growstage.Stage` (its ``spec``), so that
    ``Schedule(build=builder(extern_data), stages=layerwise(net))`` builds each stage;
    ``extern_data`` is RETURNN's (``{"data": {"dim": 40}, "classes": {"dim": 10, "sparse": True}}``).
    """
    spec = getattr(net_dict, "spec", net_dict)
    if not isinstance(spec, Mapping):
        raise NetDictError(f"build_model needs a network dict, not a {type(spec).__name__}")
    if extern_data is not None and not isinstance(extern_data, Mapping):
        raise NetDictError(f"extern_data must be a dict {{'data': {{'dim': ...}}}}, not a {type(extern_data).__name__}")
    graph = _Graph(spec, dict(extern_data or {}))
    for out in graph.outputs():
        graph.layer(out)
    model = graph.model(name, list(graph.inputs.values()))
    _REPORTS[model] = {where: _load(where, sub, load) for where, sub, load in graph.loads}
    return model


def builder(extern_data: Mapping[str, Any], **kwargs: Any) -> Callable[[Any], keras.Model]:
    """A Schedule build function: ``build(stage_or_net_dict) -> keras.Model`` with this ``extern_data``."""
    def build(stage: Any) -> keras.Model:
        return build_model(stage, extern_data, **kwargs)
    return build


def load_reports(model: Any) -> dict:
    """``{subnetwork: Report}`` of the ``load_on_init`` loads done when ``model`` was built."""
    return dict(_REPORTS.get(model, {}))
