"""Layer-wise construction: the network dicts of a growing schedule, smallest first.

A network dict is RETURNN's: ``{layer_name: {"class": ..., "from": [...], ...}}``; ``"from"``
may be a list or one name, and defaults to the input (``"data"``).  Keys starting with ``#``
are not layers but per-network options (see :mod:`growstage.train.pretrain`); construction
passes over them and leaves them with the full network, the last stage.

Two behaviours:

- growstage's (the default): ``from_output`` peels the layers feeding the output and re-wires
  every consumer of a removed layer to its nearest kept sources, keeping source order
  (``[lstmK_fw, lstmK_bw]``); ``from_input`` keeps the layers within n steps of the input along
  the *longest* path.
- ``compat="returnn"``: exactly RETURNN's ``Pretrain`` (sorted ``from`` of the output,
  breadth-first ``from_input``, RETURNN's errors on nets it cannot peel); see
  :func:`growstage.train.pretrain.returnn_stage_nets`.

Both keep every output layer (``output``, plus softmax layers and layers with a ``target``,
``loss`` or ``is_output_layer``) in every stage, and merge a step that adds only
``"trainable": False`` layers into the next one, as RETURNN does.

Example::

    >>> [st["output"]["from"] for st in layerwise(stack(["h1", "h2", "h3"]))]
    [['h1'], ['h2'], ['h3']]
    >>> net = {"a": {"class": "rec", "from": "data"}, "b": {"class": "rec", "from": "data"},
    ...        "output": {"class": "softmax", "from": ["b", "a"]}}
    >>> layerwise(net)[0]["output"]["from"], len(layerwise(net, compat="returnn"))
    (['b', 'a'], 1)
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Sequence

from growstage.core.errors import GrowstageError, UnknownNameError, did_you_mean

Net = dict[str, Any]


def stack(hidden: Sequence[str], output: str = "output", input: str = "data", *,
          layer: Mapping[str, Any] | None = None, output_layer: Mapping[str, Any] | None = None) -> Net:
    """A network dict of a plain stack: ``input -> hidden[0] -> ... -> output``; ``layer`` and
    ``output_layer``: options every hidden layer / the output gets (RETURNN needs a ``class``).

    >>> stack(["h1"], layer={"class": "linear", "n_out": 4}, output_layer={"class": "softmax"})["output"]
    {'class': 'softmax', 'from': ['h1']}
    """
    net: Net = {}
    prev = input
    for name in hidden:
        net[name] = {**copy.deepcopy(dict(layer or {})), "from": [prev]}
        prev = name
    net[output] = {**copy.deepcopy(dict(output_layer or {})), "from": [prev]}
    return net


def layer_names(net: Mapping[str, Any]) -> list[str]:
    """The layers of a network dict: every key but the ``#`` options."""
    return [k for k in net if not k.startswith("#")]


def sources(layer: Mapping[str, Any], input: str = "data") -> list[str]:
    """A layer's ``from`` as a list (RETURNN's default: the input)."""
    src = layer.get("from", [input])
    return [src] if isinstance(src, str) else list(src)


def is_input(name: str, inputs: Sequence[str]) -> bool:
    """``data``, ``data:<key>`` and the named inputs are read from outside the network."""
    return name in inputs or name == "data" or name.startswith("data:")


def is_output(net: Mapping[str, Any], name: str, outputs: Sequence[str], *, returnn: bool = False) -> bool:
    """An output layer: named as one, a softmax, or a layer with a ``target`` (RETURNN's ``Pretrain``
    rule, ``returnn=True``); growstage also counts a ``loss`` and ``is_output_layer``."""
    layer = net[name]
    if name in outputs or layer.get("class") == "softmax" or "target" in layer:
        return True
    return not returnn and (bool(layer.get("loss")) or bool(layer.get("is_output_layer")))


def normalise(net: Mapping[str, Any], inputs: Sequence[str], where: str = "layerwise") -> Net:
    """A checked deep copy: every layer a dict, every ``from`` a list of known names, no cycles.

    >>> normalise({"h": {"from": "data"}, "output": {"from": "h"}}, ["data"])["output"]
    {'from': ['h']}
    """
    if not isinstance(net, Mapping):
        raise GrowstageError(f"{where}: the network must be a dict {{layer_name: {{...}}}}, "
                             f"not {type(net).__name__}")
    out: Net = {}
    for name, layer in net.items():
        if not isinstance(name, str) or not name:
            raise GrowstageError(f"{where}: layer names must be non-empty strings, not {name!r}")
        if name.startswith("#"):
            out[name] = copy.deepcopy(layer)
            continue
        if not isinstance(layer, Mapping):
            raise GrowstageError(f"{where}: layer {name!r} is {type(layer).__name__} {layer!r}; a layer is a "
                                 "dict of options such as {'class': 'linear', 'from': [...]}")
        layer = copy.deepcopy(dict(layer))
        if "from" in layer:
            src = layer["from"]
            if isinstance(src, str):
                src = [src]
            if not isinstance(src, (list, tuple)) or not all(isinstance(s, str) for s in src):
                raise GrowstageError(f"{where}: layer {name!r} has 'from': {layer['from']!r}; "
                                     "give a layer name or a list of layer names")
            layer["from"] = list(src)
        out[name] = layer
    names = layer_names(out)
    if not names:
        raise GrowstageError(f"{where}: the network has no layers")
    for name in names:
        for s in sources(out[name]):
            if s not in out and not is_input(s, inputs):
                raise UnknownNameError("layer", s, names + list(inputs), hint=f"(in 'from' of layer {name!r}; "
                                       f"inputs: {', '.join(inputs)})")
    _check_acyclic(out, inputs, where)
    return out


def _check_acyclic(net: Net, inputs: Sequence[str], where: str) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2 or is_input(name, inputs):
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise GrowstageError(f"{where}: the layers form a cycle {' -> '.join(cycle)}; "
                                 "a network dict must be acyclic (recurrence lives inside a rec layer)")
        state[name] = 1
        for s in sources(net[name]):
            visit(s, path + [name])
        state[name] = 2

    for name in layer_names(net):
        visit(name, [])


def as_names(value: str | Sequence[str], what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise GrowstageError(f"layerwise: {what} must be a layer name or a non-empty list of names, not {value!r}")
    return names


def merge_untrainable(stages: list[Net], outputs: Sequence[str], *, returnn: bool = False) -> list[Net]:
    """RETURNN's rule: drop a stage whose new layers (outputs aside) are all ``trainable: False``; keep the last."""
    kept: list[Net] = []
    prev: Net = {}
    for net in stages[:-1]:
        new = [n for n in layer_names(net) if n not in prev and not is_output(net, n, outputs, returnn=returnn)]
        if any(net[n].get("trainable", True) for n in new):
            kept.append(net)
        prev = net
    return kept + stages[-1:]


def _rewire(full: Net, keep: set[str], inputs: Sequence[str]) -> Net:
    """``full`` restricted to ``keep``: a removed source's place goes to its nearest kept layers,
    or to the input when none is left on that path and the layer reads no kept layer otherwise."""
    def resolve(src: str) -> list[str]:
        if is_input(src, inputs) or src in keep:
            return [src]
        out: list[str] = []
        for s in sources(full[src], inputs[0]):
            out += [x for x in resolve(s) if x not in out]
        return out

    net: Net = {}
    for name in layer_names(full):
        if name not in keep:
            continue
        layer = copy.deepcopy(full[name])
        own = sources(full[name], inputs[0])
        srcs: list[str] = []
        for s in own:
            srcs += [x for x in resolve(s) if x not in srcs]
        if any(not is_input(s, inputs) for s in srcs):
            # as RETURNN: a layer that reads kept layers does not start reading the input
            srcs = [s for s in srcs if not is_input(s, inputs) or s in own]
        layer["from"] = srcs
        net[name] = layer
    return net


def _from_output(full: Net, main: list[str], outs: set[str], inputs: Sequence[str]) -> list[Net]:
    keep = set(layer_names(full))
    cur = _rewire(full, keep, inputs)
    chain = [cur]
    while True:
        direct = {s for o in main for s in cur[o]["from"] if not is_input(s, inputs) and s not in outs}
        if not direct or not (keep - direct - outs):
            break
        keep -= direct
        cur = _rewire(full, keep, inputs)
        if any(full[d].get("trainable", True) for d in direct):  # as RETURNN: peel on past untrainable ones
            chain.append(cur)
    return chain[::-1]


def _from_input(full: Net, outs: set[str], inputs: Sequence[str]) -> list[Net]:
    depth: dict[str, int] = {}

    def d(name: str) -> int:  # the longest path from the input
        if is_input(name, inputs):
            return 0
        if name not in depth:
            depth[name] = 1 + max((d(s) for s in sources(full[name], inputs[0])), default=0)
        return depth[name]

    hidden = [h for h in layer_names(full) if h not in outs]
    return [_rewire(full, {h for h in hidden if d(h) <= n} | outs, inputs)
            for n in range(1, max((d(h) for h in hidden), default=0) + 1)]


def layerwise(net: Mapping[str, Any], *, method: str | Callable[..., Any] = "from_output",
              output: str | Sequence[str] = "output", input: str | Sequence[str] = "data", start: int = 1,
              compat: str | None = None) -> list[Net]:
    """The network dicts of a layer-wise growing schedule, smallest first, the full ``net`` last.

    ``method``: ``"from_output"`` (peel the layers feeding ``output`` while it reads a hidden
    layer), ``"from_input"`` (stage n keeps the layers within n steps of the input),
    ``"no_network_modifications"`` (one stage), or RETURNN's custom construction function
    ``f(idx=, net_dict=) -> dict | None``, called with a deep copy of ``net`` until it returns
    nothing; ``net`` is appended as the last stage.  ``output``: the output layer(s) whose
    sources are peeled (RETURNN's ``output_layers``); every output layer stays in every stage.
    ``input``: the input name(s).  ``start``: drop first stages with fewer hidden layers.
    ``compat="returnn"``: RETURNN's ``Pretrain`` exactly (no ``start``).  Examples: the module's docstring.
    """
    outputs, inputs = as_names(output, "output"), as_names(input, "input")
    if not isinstance(start, int) or isinstance(start, bool) or start < 1:
        raise GrowstageError(f"layerwise: start must be an int >= 1, not {start!r}")
    if compat is not None:
        if compat != "returnn":
            raise GrowstageError(f"layerwise: unknown compat {compat!r}{did_you_mean(str(compat), ['returnn'])}; "
                                 "use compat='returnn' or leave it out")
        if start != 1:
            raise GrowstageError("layerwise: start= is growstage's option; RETURNN's Pretrain has none "
                                 "(leave out compat='returnn' or start)")
        from growstage.train.pretrain import returnn_stage_nets
        return returnn_stage_nets(net, construction_algo=method, output_layers=outputs, input_layers=inputs)
    if callable(method):
        from growstage.train.pretrain import custom_stage_nets
        return custom_stage_nets(net, method, inputs)
    full = normalise(net, inputs)
    options = {k: v for k, v in full.items() if k.startswith("#")}
    full = {k: v for k, v in full.items() if not k.startswith("#")}
    for o in outputs:
        if o not in full:
            raise UnknownNameError("output layer", o, list(full), hint="(pass output=<name> or a list of names)")
    outs = {n for n in full if is_output(full, n, outputs)}
    if not set(full) - outs:
        raise GrowstageError("layerwise: the network has only output layers; nothing to grow")
    if method == "from_input":
        stages = _from_input(full, outs, inputs)
    elif method == "from_output":
        stages = _from_output(full, outputs, outs, inputs)
    elif method == "no_network_modifications":
        stages = []
    else:
        names = ["from_output", "from_input", "no_network_modifications"]
        raise GrowstageError(f"layerwise: unknown method {method!r}{did_you_mean(str(method), names)}; "
                             "use one of " + ", ".join(names) + " or a function f(idx=, net_dict=)")
    final = _rewire(full, set(full), inputs)
    if not stages or stages[-1] != final:
        stages.append(final)
    stages = merge_untrainable(stages, outputs)
    while len(stages) > 1 and len([n for n in stages[0] if n not in outs]) < start:
        stages.pop(0)
    stages[-1].update(options)
    return stages
