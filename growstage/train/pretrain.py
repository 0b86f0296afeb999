"""RETURNN's ``Pretrain``: its stage construction, repetitions and per-stage options, as schedule stages.

:func:`returnn_pretrain` takes what RETURNN's ``pretrain = {...}`` config takes and returns the
stages of a :class:`~growstage.Schedule`; ``sched.stage_for_epoch(e)`` then gives the network
RETURNN's ``get_network_json_for_epoch(e + 1)`` gives (``tests/test_pretrain_returnn.py``
compares with RETURNN's own ``Pretrain`` on recorded fixtures).  The transfer into each stage
uses RETURNN's mode: ``copy_param_mode=None`` copies equal shapes and keeps the rest at their
init (growstage's ``ifpossible``), and ``copy_output_layer=False`` resets the output layers.

Keys starting with ``#`` in a network dict are per-stage options (:func:`split_net_options`):
``#copy_param_mode`` (the transfer mode into that stage), ``#repetition`` (its epochs) and
``#config`` (only ``learning_rate``; any other key is an error naming it).

Example::

    >>> from growstage.train.layerwise import stack
    >>> stages = returnn_pretrain(stack(["h1", "h2", "h3"]), repetitions={"default": 1, "final": 3})
    >>> [(sorted(s["spec"]), s["repetitions"], s["mode"]) for s in stages][0]
    (['h1', 'output'], 1, 'ifpossible')
    >>> split_net_options({"h": {}, "#config": {"learning_rate": 0.1}, "#repetition": 2}, "net")
    ({'h': {}}, {'learning_rate': 0.1, 'repetitions': 2})
"""
from __future__ import annotations

import copy
import inspect
import numbers
from typing import Any, Callable, Mapping, Sequence

from growstage.core.errors import GrowstageError, did_you_mean
from growstage.train.layerwise import (Net, as_names, is_input, is_output, layer_names, merge_untrainable,
                                       normalise, sources)

NET_OPTIONS = ("#copy_param_mode", "#repetition", "#config")
COPY_PARAM_MODES = (None, "ifpossible", "subset", "reset")  # what RETURNN's Pretrain accepts
ALGOS = ("from_output", "from_input", "no_network_modifications")


def _copy_mode(value: Any, where: str) -> str:
    """RETURNN's copy_param_mode as growstage's mode: None (equal shapes copied) is ``ifpossible``."""
    if value not in COPY_PARAM_MODES:
        names = [m for m in COPY_PARAM_MODES if m]
        raise GrowstageError(f"{where} is {value!r}{did_you_mean(str(value), names)}; RETURNN takes None, "
                             + ", ".join(repr(m) for m in names))
    return value or "ifpossible"


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise GrowstageError(f"{where} is {value!r}; expected an int >= 0 (the epochs of that stage)")
    return int(value)


def split_net_options(net: Mapping[str, Any], where: str) -> tuple[Net, dict]:
    """A network dict without its ``#`` keys, and those keys as stage options
    (``mode``, ``repetitions``, ``learning_rate``)."""
    opts: dict[str, Any] = {}
    for key, value in net.items():
        if not (isinstance(key, str) and key.startswith("#")):
            continue
        if key == "#copy_param_mode":
            opts["mode"] = _copy_mode(value, f"{where}: '#copy_param_mode'")
        elif key == "#repetition":
            opts["repetitions"] = _count(value, f"{where}: '#repetition'")
        elif key == "#config":
            if not isinstance(value, Mapping):
                raise GrowstageError(f"{where}: '#config' must be a dict such as {{'learning_rate': 0.01}}")
            other = [k for k in value if k != "learning_rate"]
            if other:
                raise GrowstageError(f"{where}: '#config' sets {', '.join(map(repr, other))}: growstage honours only "
                                     "'learning_rate' per stage (give batch sizes and the like to fit())")
            if "learning_rate" in value:
                lr = value["learning_rate"]
                if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
                    raise GrowstageError(f"{where}: '#config' learning_rate is {lr!r}; expected a number > 0")
                opts["learning_rate"] = float(lr)
        else:
            raise GrowstageError(f"{where}: unknown network option {key!r}{did_you_mean(key, NET_OPTIONS)}; "
                                 f"growstage honours {', '.join(NET_OPTIONS)}")
    return {k: v for k, v in net.items() if not (isinstance(k, str) and k.startswith("#"))}, opts


def pretrain_repetitions(repetitions: Any, n: int) -> list[int]:
    """RETURNN's ``repetitions`` for ``n`` stages: falsy (0, None, [], {}) means 1 each; an int; a
    list whose last value repeats (longer than the stages: an error); a dict with ``default``,
    ``final`` and stage indices (negative ones count from the end).

    >>> pretrain_repetitions(0, 3), pretrain_repetitions([2, 1], 3), pretrain_repetitions({1: 3, "final": 2}, 3)
    ([1, 1, 1], [2, 1, 1], [1, 3, 2])
    """
    if isinstance(repetitions, bool):
        raise GrowstageError(f"repetitions is {repetitions!r}; give an int, a list or a dict")
    if not repetitions:
        return [1] * n
    if isinstance(repetitions, Mapping):
        rest = dict(repetitions)
        out = [_count(rest.pop("default", 1), "repetitions['default']")] * n
        seen: dict[int, Any] = {}
        for key, value in rest.items():
            i = n - 1 if key == "final" else key
            if isinstance(i, bool) or not isinstance(i, int):
                raise GrowstageError(f"repetitions: unknown key {key!r}{did_you_mean(str(key), ['default', 'final'])}; "
                                     "use 'default', 'final' or a stage index")
            if not -n <= i < n:
                raise GrowstageError(f"repetitions: key {key!r} names no stage; the construction made {n} stages "
                                     f"(0..{n - 1}, or 'final')")
            if i % n in seen:
                raise GrowstageError(f"repetitions: keys {seen[i % n]!r} and {key!r} both set stage {i % n}")
            seen[i % n] = key
            out[i % n] = _count(value, f"repetitions[{key!r}]")
        return out
    if isinstance(repetitions, numbers.Integral):
        return [_count(repetitions, "repetitions")] * n
    if isinstance(repetitions, (list, tuple)):
        if len(repetitions) > n:
            raise GrowstageError(f"repetitions lists {len(repetitions)} values but the construction made {n} "
                                 "stages (RETURNN refuses this too); give at most one value per stage")
        vals = [_count(v, f"repetitions[{i}]") for i, v in enumerate(repetitions)]
        return vals + vals[-1:] * (n - len(vals))
    raise GrowstageError(f"repetitions is {type(repetitions).__name__}; give an int, a list or a dict")


def _peel_from_output(new: Net, orig: Net, outputs: list[str], inputs: list[str], n: int) -> Net | None:
    """RETURNN's ``_construct_new_epoch_from_output``: one simpler network, or None."""
    while True:
        new_sources: set[str] = set()
        deleted: set[str] = set()
        for out in outputs:
            for src in sources(new[out]):
                if src in inputs:
                    new_sources.add(src)
                    continue
                if src not in new:
                    raise GrowstageError(
                        f"RETURNN's from_output cannot peel this network: output {out!r} reads {src!r}, which "
                        f"step {n} already removed (RETURNN fails with an AssertionError); use layerwise() "
                        "without compat (it re-wires) or construction_algo='from_input'")
                new_sources.update(sources(new[src]))
                del new[src]
                deleted.add(src)
        if sorted(new_sources) == sorted({s for out in outputs for s in sources(new[out])}):
            return None
        for out in outputs:
            new[out]["from"] = sorted(new_sources)
        if new_sources & set(inputs):
            continue  # the output would read the input: its input dimension changes; peel further
        if all(not orig[d].get("trainable", True) for d in deleted):
            continue
        return new


def _from_output(orig: Net, outputs: list[str], inputs: list[str]) -> list[Net]:
    for out in outputs:
        if out not in orig:
            raise GrowstageError(f"output layer {out!r} is not in the network{did_you_mean(out, layer_names(orig))} "
                                 "(pass output_layers=[...])")
    stages = [orig]
    while (new := _peel_from_output(copy.deepcopy(stages[0]), orig, outputs, inputs, len(stages))) is not None:
        stages.insert(0, new)
    return stages


def _descendants(orig: Net, srcs: list[str]) -> list[str]:
    return [name for name in sorted(layer_names(orig)) if any(s in sources(orig[name]) for s in srcs)]


def _existing_inputs(orig: Net, new: Net, name: str, found: list[str], visited: set[str]) -> list[str]:
    """RETURNN's ``_find_existing_inputs``: the nearest sources of ``name`` present in ``new``."""
    for src in sources(orig[name]):
        if src in new or is_input(src, ()):
            if src not in found:
                found.append(src)
        elif src not in visited:
            visited.add(src)
            _existing_inputs(orig, new, src, found, visited)
    return found


def _from_input_step(orig: Net, outputs: list[str], inputs: list[str], num_steps: int) -> Net | None:
    """RETURNN's ``_construct_next_epoch_from_input``: breadth-first, ``num_steps`` deep, or None at the end."""
    new: Net = {}
    srcs, needed = list(inputs), set()

    def add(name: str) -> None:
        needed.discard(name)
        new[name] = copy.deepcopy(orig[name])
        needed.update(s for s in sources(new[name]) if s not in new and not is_input(s, ()))

    while True:  # non-trainable layers near the input (windows and the like) come first
        added = [n for n in _descendants(orig, srcs) if n not in new and not orig[n].get("trainable", True)]
        for name in added:
            srcs.append(name)
            add(name)
        if not added:
            break
    for _ in range(num_steps):
        srcs = [n for n in _descendants(orig, srcs) if n not in new]
        for name in srcs:
            add(name)
        if not srcs:
            return None
    for name in sorted(layer_names(orig)):
        if name not in new and is_output(orig, name, outputs, returnn=True):
            add(name)
    if not needed:
        return None
    for name in sorted(new):
        found = _existing_inputs(orig, new, name, [], {name})
        if sources(new[name]) != found:
            if "data" in found:
                found.remove("data")
            new[name]["from"] = found
    return new


def custom_stage_nets(net: Mapping[str, Any], func: Callable[..., Any], inputs: Sequence[str]) -> list[Net]:
    """RETURNN's custom construction: ``func(idx=, net_dict=deepcopy(net))`` until it returns nothing, then ``net``."""
    try:
        inspect.signature(func).bind(idx=0, net_dict={})
    except (TypeError, ValueError):
        raise GrowstageError("the construction function must take idx= and net_dict= (RETURNN's signature "
                             "f(idx, net_dict) -> dict | None); for growstage's lazy f(idx, prev_spec) "
                             "use Schedule(stage_fn=...)") from None
    orig = normalise(net, inputs)
    stages = []
    for idx in range(10_001):
        d = func(idx=idx, net_dict=copy.deepcopy(dict(net)))
        if not d:
            return stages + [orig]
        stages.append(normalise(d, inputs, f"stage {idx} of the construction function"))
    raise GrowstageError("the construction function made 10000 stages without returning None")


def returnn_stage_nets(net: Mapping[str, Any], construction_algo: str | Callable[..., Any] = "from_output",
                       output_layers: Sequence[str] = ("output",),
                       input_layers: Sequence[str] = ("data",)) -> list[Net]:
    """The network of each stage, as RETURNN's ``Pretrain`` builds them (before repetitions).

    >>> [sorted(n) for n in returnn_stage_nets({"h": {"class": "linear"}, "output": {"from": "h"}})]
    [['h', 'output']]
    """
    outputs, inputs = as_names(output_layers, "output_layers"), as_names(input_layers, "input_layers")
    if callable(construction_algo):
        return custom_stage_nets(net, construction_algo, inputs)  # RETURNN trusts the function: no merging
    orig = normalise(net, inputs)
    layers = {k: v for k, v in orig.items() if not k.startswith("#")}
    if construction_algo == "from_output":
        stages = _from_output(layers, outputs, inputs)
    elif construction_algo == "from_input":
        stages = []
        while (step := _from_input_step(layers, outputs, inputs, len(stages) + 1)) is not None:
            stages.append(step)
        stages.append(layers)
    elif construction_algo == "no_network_modifications":
        stages = [layers]
    else:
        raise GrowstageError(f"construction_algo {construction_algo!r}{did_you_mean(str(construction_algo), ALGOS)}; "
                             "use " + ", ".join(ALGOS) + " or a function f(idx=, net_dict=)")
    stages = merge_untrainable(stages[:-1] + [orig], outputs, returnn=True)
    for i, stage in enumerate(stages[:-1]):
        for name in layer_names(stage):
            for src in sources(stage[name]):
                if src not in stage and not is_input(src, inputs):
                    raise GrowstageError(f"RETURNN's {construction_algo} leaves layer {name!r} of stage {i} reading "
                                         f"{src!r}, which that stage removed (RETURNN fails when it builds it); "
                                         "list it in output_layers, or use layerwise() without compat (it re-wires)")
    return stages


def _output_mode(copy_output_layer: Any, copy_param_mode: Any) -> str | None:
    """The output layers' mode: 'reset' (RETURNN drops them), an explicit mode, or None (the stage's)."""
    if copy_output_layer is None:
        return "reset" if copy_param_mode == "reset" else None
    if copy_output_layer is False or copy_output_layer == "reset":
        return "reset"
    if copy_output_layer is True:
        return None
    if copy_output_layer in ("ifpossible", "subset"):
        return copy_output_layer
    raise GrowstageError(f"copy_output_layer is {copy_output_layer!r}; RETURNN takes None, True, False, "
                         "'ifpossible', 'subset' or 'reset'")


def returnn_pretrain(net: Mapping[str, Any], *, construction_algo: str | Callable[..., Any] = "from_output",
                     repetitions: Any = None, copy_param_mode: str | None = None, copy_output_layer: Any = None,
                     greedy: bool | None = None, output_layers: Sequence[str] = ("output",),
                     input_layers: Sequence[str] = ("data",)) -> list[dict]:
    """RETURNN's ``Pretrain(net, **options)`` as the stages of a :class:`~growstage.Schedule`.

    Each stage is ``{"spec": net_dict, "repetitions": n, "mode": ..., ["modes": {...}],
    ["learning_rate": lr]}``; a stage with 0 repetitions is left out, as RETURNN skips it.
    Use: ``Schedule(build, stages=returnn_pretrain(net, repetitions=2))``.
    """
    mode = _copy_mode(copy_param_mode, "copy_param_mode")
    out_mode = _output_mode(copy_output_layer, copy_param_mode)
    if greedy:
        raise GrowstageError("greedy=True: RETURNN's TF backend raises NotImplementedError for it after epoch 1; "
                             "freeze layers with a stage's frozen=[...] instead")
    nets = returnn_stage_nets(net, construction_algo, output_layers, input_layers)
    split = [split_net_options(n, f"stage {i}") for i, n in enumerate(nets)]
    reps = pretrain_repetitions(repetitions, len(nets))
    reps = [opts.pop("repetitions", r) for (_, opts), r in zip(split, reps)]
    if reps[-1] == 0:
        raise GrowstageError("repetitions give the final network 0 epochs: RETURNN would then train an earlier "
                             "stage's network for good and never the full one; give the final stage at least 1")
    stages = []
    for (spec, opts), n in zip(split, reps):
        if n == 0:
            continue
        stage = {"spec": spec, "repetitions": n, "mode": opts.get("mode", mode)}
        if "learning_rate" in opts:
            stage["learning_rate"] = opts["learning_rate"]
        outs = [k for k in spec if k == "output" or spec[k].get("loss") or spec[k].get("is_output_layer")]
        if out_mode is not None and outs:
            stage["modes"] = {k: out_mode for k in outs}  # RETURNN's network output layers
        stages.append(stage)
    return stages
