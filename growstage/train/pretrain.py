"""RETURNN's ``Pretrain``: its stage construction, repetitions and per-stage options, as schedule stages.

:func:`returnn_pretrain` takes what RETURNN's ``pretrain = {...}`` config takes and returns the
stages of a :class:`~growstage.Schedule`; ``sched.stage_for_epoch(e)`` then gives the network
RETURNN's ``get_network_json_for_epoch(e + 1)`` gives (``tests/test_pretrain_returnn.py``
compares with RETURNN's own ``Pretrain`` on recorded fixtures).  The transfer into each stage
uses RETURNN's mode: ``copy_param_mode=None`` copies equal shapes and keeps the rest at their
init (growstage's ``ifpossible``), and ``copy_output_layer=False`` resets the output layers.

Keys starting with ``#`` in a network dict are per-stage options (:func:`split_net_options`):
``#copy_param_mode`` (the transfer mode into that stage), ``#repetition`` (its epochs) and
``#config`` (only ``learning_rate``; any other key is an error naming it).  A layer's own
``custom_param_importer`` mode string overrides the stage's mode for that layer, and a
``WrapEpochValue`` anywhere RETURNN looks is resolved per epoch (:mod:`growstage.train.epoch_values`).

Example::

    >>> from growstage.train.layerwise import stack
    >>> net = stack(["h1", "h2", "h3"], layer={"class": "linear", "n_out": 4}, output_layer={"class": "softmax"})
    >>> stages = returnn_pretrain(net, repetitions={"default": 1, "final": 3})
    >>> [(sorted(s["spec"]), s["repetitions"], s["mode"]) for s in stages][0]
    (['h1', 'output'], 1, 'ifpossible')
"""
from __future__ import annotations

import copy
import inspect
import numbers
from typing import Any, Callable, Mapping, Sequence

from growstage.core.errors import GrowstageError, did_you_mean
from growstage.train.epoch_values import is_wrapped, resolve_epoch_values, wrapped_at
from growstage.train.pretrain_options import (COPY_PARAM_MODES, NET_OPTIONS, _copy_mode, _count,  # noqa: F401
                                              layer_modes, outputs_reset, pretrain_repetitions, split_net_options)
from growstage.train.layerwise import (Net, as_names, is_input, is_output, layer_names, merge_untrainable,
                                       normalise, sources)

ALGOS = ("from_output", "from_input", "no_network_modifications")


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
                        f"RETURNN's from_output cannot peel this network: output {out!r} reads {src!r}, "
                        + (f"an input not among input_layers {inputs} (RETURNN fails with an AssertionError); pass "
                           f"input_layers={inputs + [src]}" if is_input(src, ()) else
                           f"which step {n} already removed (RETURNN fails with an AssertionError); use layerwise() "
                           "without compat (it re-wires) or construction_algo='from_input'"))
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
        if "from" not in orig[out]:
            raise GrowstageError(f"output layer {out!r} has no 'from': RETURNN's from_output fails on it (KeyError: "
                                 f"'from'; its other construction_algos read the input); write 'from': ['data']")
    stages = [orig]
    while (new := _peel_from_output(copy.deepcopy(stages[0]), orig, outputs, inputs, len(stages))) is not None:
        stages.insert(0, new)
    return stages


def _descendants(orig: Net, srcs: list[str]) -> list[str]:
    return [name for name in sorted(layer_names(orig)) if any(s in sources(orig[name]) for s in srcs)]


def _existing_inputs(orig: Net, new: Net, name: str, found: list[str], visited: set[str]) -> list[str]:
    """RETURNN's ``_find_existing_inputs``: the nearest sources of ``name`` present in ``new``."""
    for src in sources(orig[name]):
        if src in new or src == "data":
            if src not in found:
                found.append(src)
        elif src not in orig:
            raise GrowstageError(f"RETURNN's from_input cannot grow this network: layer {name!r} reads {src!r}, and "
                                 "RETURNN's from_input knows no input but 'data', whatever input_layers says (it "
                                 f"fails with KeyError: {src!r}); growstage's own from_input reads every input: "
                                 "Schedule(build, stages=layerwise(net, method='from_input'))")
        elif src not in visited:
            visited.add(src)
            _existing_inputs(orig, new, src, found, visited)
    return found


def _from_input_step(orig: Net, outputs: list[str], num_steps: int) -> Net | None:
    """RETURNN's ``_construct_next_epoch_from_input``: breadth-first, ``num_steps`` deep, or None at the end."""
    new: Net = {}
    srcs, needed = ["data"], set()  # as RETURNN: the search starts at 'data' whatever the input_layers

    def add(name: str) -> None:
        needed.discard(name)
        new[name] = copy.deepcopy(orig[name])
        needed.update(s for s in sources(new[name]) if s not in new and s != "data")

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


def _names(value: Any, option: str) -> list[str]:
    if isinstance(value, str):
        raise GrowstageError(f"{option}={value!r} is a string: RETURNN iterates its characters ({list(value[:2])}...; "
                             f"from_output fails, from_input matches substrings); give a list: {option}=[{value!r}]")
    return as_names(value, option)


def _check_names(net: Mapping[str, Any], outputs: list[str], inputs: list[str], algo: Any) -> None:
    """Every output_layers name a layer, every input_layers name 'data', 'data:<key>' or a layer: RETURNN's
    from_output fails on a name that matches nothing, its other construction_algos ignore it."""
    if not isinstance(net, Mapping):
        return  # normalise() says what is wrong with it
    layers = [k for k in net if isinstance(k, str) and not k.startswith("#")]
    returnn = ("RETURNN's from_output fails with an AssertionError" if algo == "from_output" else
               "RETURNN's construction function ignores it" if callable(algo) else f"RETURNN's {algo} ignores it")
    for out in outputs:
        if out not in layers:
            raise GrowstageError(f"output layer {out!r} is not in the network{did_you_mean(out, layers)} ({returnn}); "
                                 "pass output_layers=[...] naming its output layers")
    for name in inputs:
        if not (name == "data" or name.startswith("data:") or name in layers):
            raise GrowstageError(f"input_layers names {name!r}, neither 'data', 'data:<key>' nor a layer"
                                 f"{did_you_mean(name, ['data'] + layers)}: it matches no source ({returnn})")


def _check_classes(nets: list[Net]) -> None:
    for i, stage in enumerate(nets):
        for name in layer_names(stage):
            if "class" not in stage[name]:
                where = "the network" if i == len(nets) - 1 else f"stage {i}"
                raise GrowstageError(f"layer {name!r} of {where} has no 'class': RETURNN cannot build it (its Pretrain "
                                     "fails with KeyError: 'class'); give every layer one (stack(..., layer={'class': "
                                     "'linear', ...})), or use layerwise(net) without compat")


def returnn_stage_nets(net: Mapping[str, Any], construction_algo: str | Callable[..., Any] = "from_output",
                       output_layers: Sequence[str] = ("output",),
                       input_layers: Sequence[str] = ("data",)) -> list[Net]:
    """The network of each stage, as RETURNN's ``Pretrain`` builds them (before repetitions).

    >>> net = {"h": {"class": "linear", "n_out": 4}, "output": {"class": "softmax", "from": "h"}}
    >>> [sorted(n) for n in returnn_stage_nets(net)]
    [['h', 'output']]
    """
    outputs, inputs = _names(output_layers, "output_layers"), _names(input_layers, "input_layers")
    _check_names(net, outputs, inputs, construction_algo)
    if callable(construction_algo):
        stages = custom_stage_nets(net, construction_algo, inputs)  # RETURNN trusts the function: no merging
        _check_classes(stages)
        return stages
    orig = normalise(net, inputs)
    layers = {k: v for k, v in orig.items() if not k.startswith("#")}
    _check_classes([layers])
    if construction_algo == "from_output":
        stages = _from_output(layers, outputs, inputs)
    elif construction_algo == "from_input":
        stages = []
        while (step := _from_input_step(layers, outputs, len(stages) + 1)) is not None:
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


def _stage(net: Net, epoch: int, mode: str, reset_outputs: bool, where: str) -> dict:
    """One stage dict from a construction stage's network in RETURNN's ``epoch`` (from 1)."""
    resolved = resolve_epoch_values(net, epoch) if wrapped_at(net) else net
    spec, opts = split_net_options(resolved, where)
    stage = {"spec": spec, "repetitions": 1, "mode": opts.get("mode", mode)}
    if "learning_rate" in opts:
        stage["learning_rate"] = opts["learning_rate"]
    modes = layer_modes(spec, reset_outputs, where)
    if modes:
        stage["modes"] = modes
    return stage


OPTIONS = ("construction_algo", "repetitions", "copy_param_mode", "copy_output_layer", "greedy", "output_layers",
           "input_layers")


def _unknown_option(key: str) -> str:
    if key == "network_init_args":
        return "returnn_pretrain: network_init_args is RETURNN's Theano-only option (its TF backend ignores it); leave it out"
    if key == "pretrain_learning_rate":
        return ("returnn_pretrain: pretrain_learning_rate is RETURNN's config key for one rate in the pretrain epochs "
                "(up to the end of the final network's repetitions); set the stages' 'learning_rate' yourself: "
                "for s in stages[:-1]: s['learning_rate'] = lr")
    if key.startswith("pretrain_") and key[len("pretrain_"):] in OPTIONS:
        return (f"returnn_pretrain: {key} is RETURNN's config key for its Pretrain's {key[len('pretrain_'):]}; pass "
                f"{key[len('pretrain_'):]}=...")
    return (f"returnn_pretrain: unknown option {key!r}{did_you_mean(key, OPTIONS)} (RETURNN's Pretrain fails on it "
            f"with a TypeError); it takes {', '.join(OPTIONS)}")


def _stage_repetitions(nets: list[Net], repetitions: Any) -> list[int]:
    """The epochs of each construction stage: ``repetitions``, then each network's own ``#repetition``
    (taken out of it, as RETURNN does before it resolves anything)."""
    reps = pretrain_repetitions(repetitions, len(nets))
    for i, n in enumerate(nets):
        if "#repetition" in n:
            value = n.pop("#repetition")
            if is_wrapped(value):
                raise GrowstageError(f"stage {i}: '#repetition' is a WrapEpochValue: RETURNN takes '#repetition' out "
                                     "before it resolves WrapEpochValues, and fails with a TypeError; give an int")
            reps[i] = _count(value, f"stage {i}: '#repetition'")
    if reps[-1] == 0:
        raise GrowstageError("repetitions give the final network 0 epochs: RETURNN would then train an earlier "
                             "stage's network for good and never the full one; give the final stage at least 1")
    return reps


def returnn_pretrain(net: Mapping[str, Any], *, construction_algo: str | Callable[..., Any] = "from_output",
                     repetitions: Any = None, copy_param_mode: str | None = None, copy_output_layer: Any = None,
                     greedy: bool | None = None, output_layers: Sequence[str] = ("output",),
                     input_layers: Sequence[str] = ("data",), **unknown: Any) -> list[dict]:
    """RETURNN's ``Pretrain(net, **options)`` as the stages of a :class:`~growstage.Schedule`.

    Each stage is ``{"spec": net_dict, "repetitions": n, "mode": ..., ["modes": {...}],
    ["learning_rate": lr]}``; a stage with 0 repetitions is left out, as RETURNN skips it.
    ``modes`` is what RETURNN's engine does per layer: output layers (its ``is_output_layer()``)
    reset when ``copy_output_layer`` is falsy, a layer's own ``custom_param_importer`` mode
    string otherwise.  A ``WrapEpochValue`` is resolved per epoch (epochs of a stage whose
    values differ become stages of their own).  A ``#config`` learning rate carries on into the
    later stages that set none, the full network included, as RETURNN's learning-rate control does.
    A stage whose network lacks a layer of the one before has ``ignore_unused=True``: RETURNN's
    engine drops that layer's params (the transition's report lists them as unused).
    Use: ``Schedule(build, stages=returnn_pretrain(net, repetitions=2))``.  An option RETURNN's
    ``Pretrain`` does not take is an error (RETURNN: ``TypeError``), naming the one meant.

    >>> net = {"h1": {"class": "linear", "n_out": 4, "from": "data"},
    ...        "h2": {"class": "linear", "n_out": 4, "from": "h1"},
    ...        "output": {"class": "softmax", "loss": "ce", "from": "h2"}}
    >>> [(sorted(s["spec"]), s["repetitions"], s.get("modes")) for s in
    ...  returnn_pretrain(net, repetitions=[1, 2], copy_output_layer=False)]
    [(['h1', 'output'], 1, {'output': 'reset'}), (['h1', 'h2', 'output'], 2, {'output': 'reset'})]
    """
    if unknown:
        raise GrowstageError(_unknown_option(next(iter(unknown))))
    mode = _copy_mode(copy_param_mode, "copy_param_mode")
    reset_outputs = outputs_reset(copy_output_layer, copy_param_mode)
    if greedy:
        raise GrowstageError("greedy=True: RETURNN's TF backend raises NotImplementedError for it after epoch 1; "
                             "freeze layers with a stage's frozen=[...] instead")
    nets = returnn_stage_nets(net, construction_algo, output_layers, input_layers)
    reps = _stage_repetitions(nets, repetitions)
    stages: list[dict] = []
    epoch, lr = 0, None
    for i, (n, r) in enumerate(zip(nets, reps)):
        first = len(stages)
        for _ in range(r):
            epoch += 1
            stage = _stage(n, epoch, mode, reset_outputs, f"stage {i}")
            # RETURNN's learning-rate control gives an epoch without a '#config' rate the last epoch's
            if "learning_rate" in stage:
                lr = stage["learning_rate"]
            elif lr is not None:
                stage["learning_rate"] = lr
            if len(stages) > first and stages[-1] == {**stage, "repetitions": stages[-1]["repetitions"]}:
                stages[-1]["repetitions"] += 1
            else:
                stages.append(stage)
    for prev, stage in zip(stages, stages[1:]):
        if set(layer_names(prev["spec"])) - set(layer_names(stage["spec"])):
            stage["ignore_unused"] = True  # RETURNN drops a layer the next network lacks; the report lists it
    return stages
