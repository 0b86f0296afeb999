"""RETURNN's ``Pretrain`` options: ``#`` keys of a network dict, ``repetitions``, and what its engine
does per layer at a transition (``copy_output_layer``, a layer's own ``custom_param_importer``).

Example::

    >>> split_net_options({"h": {}, "#config": {"learning_rate": 0.1}, "#repetition": 2}, "net")
    ({'h': {}}, {'learning_rate': 0.1, 'repetitions': 2})
    >>> outputs_reset("subset", None), outputs_reset(None, "reset"), layer_modes(
    ...     {"h": {"custom_param_importer": "subset"}, "output": {"loss": "ce"}}, True, "stage 0")
    (False, True, {'h': 'subset', 'output': 'reset'})
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping

from growstage.core.errors import GrowstageError, did_you_mean
from growstage.train.layerwise import Net, layer_names

NET_OPTIONS = ("#copy_param_mode", "#repetition", "#config")
COPY_PARAM_MODES = (None, "ifpossible", "subset", "reset")  # what RETURNN's Pretrain accepts


def _copy_mode(value: Any, where: str) -> str:
    """RETURNN's copy_param_mode as growstage's mode: None (equal shapes copied) is ``ifpossible``."""
    if value not in COPY_PARAM_MODES:
        names = [m for m in COPY_PARAM_MODES if m]
        raise GrowstageError(f"{where} is {value!r}{did_you_mean(str(value), names)}; RETURNN takes None, "
                             + ", ".join(repr(m) for m in names))
    return value or "ifpossible"


# the other '#' keys RETURNN's engine reads; any other '#' key is no layer, and RETURNN ignores it
RETURNN_HASH_KEYS = {"#finish_all_data": "RETURNN reads it only with Horovod (every worker runs to the end of the "
                                         "data); growstage's fit has no such option: leave it out"}
_IGNORED = "RETURNN ignores a '#' key its engine does not read; growstage refuses it rather than skip it: leave it out"


def _check_trainable(value: Any, where: str) -> None:
    """RETURNN's ``#trainable``: False runs the stage's epochs without updating any param."""
    if value is True:
        return
    if value is False:
        raise GrowstageError(f"{where}: '#trainable' is False: RETURNN would run this stage's epochs without updating "
                             "any param (a forward pass over the data); growstage trains every stage. Take the key out "
                             "of the construction function (a stage's 'frozen': [...] keeps layers fixed)")
    raise GrowstageError(f"{where}: '#trainable' is {value!r}; RETURNN tests it for truth (its default, True, "
                         "trains); give True or False")


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        negative = not isinstance(value, bool) and isinstance(value, numbers.Integral)
        also = " (RETURNN reads a negative count as 0 epochs)" if negative else ""
        raise GrowstageError(f"{where} is {value!r}; expected an int >= 0 (the epochs of that stage){also}")
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
                frames = " (RETURNN's batch_size counts frames, fit()'s sequences)" if "batch_size" in other else ""
                raise GrowstageError(f"{where}: '#config' sets {', '.join(map(repr, other))}: RETURNN would set that "
                                     "config key for this stage's epochs and restore it after; growstage honours only "
                                     f"'learning_rate' per stage. Leave it out and give fit() one value{frames}")
            if "learning_rate" in value:
                lr = value["learning_rate"]
                if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
                    raise GrowstageError(f"{where}: '#config' learning_rate is {lr!r}; expected a number > 0")
                opts["learning_rate"] = float(lr)
        elif key == "#trainable":
            _check_trainable(value, where)  # True is RETURNN's default: nothing to do
        else:
            dym = did_you_mean(key, NET_OPTIONS)
            raise GrowstageError(f"{where}: unknown network option {key!r}{dym + ' ' if dym else ': '}"
                                 f"{RETURNN_HASH_KEYS.get(key, _IGNORED)}. growstage honours "
                                 f"{', '.join(NET_OPTIONS)} and '#trainable': True")
    return {k: v for k, v in net.items() if not (isinstance(k, str) and k.startswith("#"))}, opts


def pretrain_repetitions(repetitions: Any, n: int) -> list[int]:
    """RETURNN's ``repetitions`` for ``n`` stages: falsy (0, None, [], {}) means 1 each; an int; a
    list whose last value repeats (longer than the stages: an error); a dict with ``default``,
    ``final`` and stage indices (negative ones count from the end).

    >>> pretrain_repetitions(0, 3), pretrain_repetitions([2, 1], 3), pretrain_repetitions({1: 3, "final": 2}, 3)
    ([1, 1, 1], [2, 1, 1], [1, 3, 2])
    """
    if isinstance(repetitions, bool):
        raise GrowstageError(f"repetitions is {repetitions!r}: RETURNN would train every stage 1 epoch (it reads "
                             f"{repetitions!r} as {'1' if repetitions else 'not given'}); give an int, a list or a dict")
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
                                     f"(0..{n - 1}, or 'final'; RETURNN fails with an IndexError)")
            if i % n in seen:
                raise GrowstageError(f"repetitions: keys {seen[i % n]!r} and {key!r} both set stage {i % n} (RETURNN "
                                     "takes the one last in sorted order, and fails when 'final' meets an int); "
                                     "give each stage one key")
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


def outputs_reset(copy_output_layer: Any, copy_param_mode: Any) -> bool:
    """Whether RETURNN resets the output layers: ``Pretrain`` resolves ``copy_output_layer`` (None: the
    ``copy_param_mode``, then ``'ifpossible'``; ``'reset'``: False) and its engine only tests it for
    falsiness, so ``'subset'`` or ``'ifpossible'`` is no mode of their own: they get the stage's."""
    value = copy_param_mode if copy_output_layer is None else copy_output_layer
    value = False if value == "reset" else "ifpossible" if value is None else value
    if value is True or value is False or value in ("ifpossible", "subset"):
        return value is False
    if isinstance(value, numbers.Integral) and value == 0:
        return True  # RETURNN accepts 0 and, falsy, resets the outputs
    also = " (RETURNN, testing it for falsiness, would reset the output layers)" if not value else ""
    raise GrowstageError(f"copy_output_layer is {copy_output_layer!r}{also}; RETURNN takes None, True, False, 0, "
                         "'ifpossible', 'subset' or 'reset'")


def is_returnn_output(name: str, layer: Mapping[str, Any]) -> bool:
    """RETURNN's ``LayerBase.is_output_layer()``: its ``is_output_layer`` if given, else a loss or the name 'output'."""
    if layer.get("is_output_layer") is not None:
        return bool(layer["is_output_layer"])
    return bool(layer.get("loss")) or name == "output"


def layer_modes(spec: Net, reset_outputs: bool, where: str) -> dict[str, str]:
    """Per layer, where RETURNN's engine departs from the stage's mode: the output layers' params
    dropped (``copy_output_layer`` falsy), else a layer's own ``custom_param_importer`` mode string."""
    modes = {}
    for name in layer_names(spec):
        own = spec[name].get("custom_param_importer")
        if reset_outputs and is_returnn_output(name, spec[name]):
            modes[name] = "reset"
        elif own:
            modes[name] = importer_mode(own, f"{where}: layer {name!r}")
    return modes


def importer_mode(value: Any, where: str) -> str:
    """A layer's ``custom_param_importer`` from a network dict as a mode (RETURNN: it overrides the copy mode)."""
    if callable(value):
        raise GrowstageError(f"{where}: custom_param_importer is a function; RETURNN calls it as f(layer=, "
                             "values_dict=, session=) with its TF layer. Give growstage's f(layer, values, *, context) "
                             "in the stage's custom_param_importer={...} instead")
    if value not in COPY_PARAM_MODES[1:]:
        raise GrowstageError(f"{where}: custom_param_importer is {value!r}{did_you_mean(str(value), COPY_PARAM_MODES[1:])}; "
                             "RETURNN takes a function or 'ifpossible', 'subset', 'reset'")
    return value
