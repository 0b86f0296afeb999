"""RETURNN checkpoint names <-> growstage names, with the layout conversions of
:mod:`growstage.interop.returnn.layouts`.  numpy only (the readers open TF files lazily).

RETURNN -> growstage, per layer (a layer name may hold ``/``: subnetworks):

==================================================  =========================================================
``L/rec/W``, ``L/rec/W_re``, ``L/rec/b``             ``L/cell/kernel``, ``L/cell/recurrent_kernel``, ``L/cell/bias``
                                                    (nativelstm2: gates c,i,f,o -> i,f,c,o)
``L/rec/lstm_cell/kernel``, ``.../bias``             the same three (standardlstm: split, i,j,f,o -> i,f,c,o,
                                                    ``forget_bias`` folded into the f gate, said in the notes)
``L/W``, ``L/b``                                     ``L/kernel``, ``L/bias`` (linear, softmax, conv)
``L/scale``, ``L/bias``                              ``L/gamma``, ``L/beta`` (layer_norm)
``L/batch_norm/v2_mean|variance|gamma|beta``         ``L/moving_mean|moving_variance|gamma|beta`` (any param_version)
``global_step``                                      set apart as training state (``reader.optimizer``)
==================================================  =========================================================

Any other name is an error naming it (``ignore`` drops names on purpose).

Example::

    >>> import numpy as np
    >>> from growstage.io.readers.base import Entry, Reader
    >>> raw = Reader("mem", "tf1", {n: Entry.of(np.zeros(s, "f4")) for n, s in
    ...       {"out/W": (3, 2), "out/b": (2,), "l1/rec/W": (4, 8), "l1/rec/W_re": (2, 8), "l1/rec/b": (8,),
    ...        "global_step": ()}.items()})
    >>> r = from_returnn(raw)
    >>> sorted(r), list(r.optimizer)
    (['l1/cell/bias', 'l1/cell/kernel', 'l1/cell/recurrent_kernel', 'out/bias', 'out/kernel'], ['global_step'])
    >>> sorted(to_returnn_names({n: r.read(n) for n in r}))
    ['l1/rec/W', 'l1/rec/W_re', 'l1/rec/b', 'out/W', 'out/b']
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from growstage.core.errors import GrowstageError, PlanError, did_you_mean
from growstage.interop.returnn import layouts
from growstage.io.readers.base import Entry, Reader

UNITS = ("nativelstm2", "standardlstm")  # the two LSTM param layouts a RETURNN rec layer stores
_NATIVE = re.compile(r"(.+)/rec/(W|W_re|b)")
_STANDARD = re.compile(r"(.+)/rec/lstm_cell/(kernel|bias)")
_BATCH_NORM = re.compile(r"(.+)/batch_norm/(?:.*_)?(mean|variance|gamma|beta)")
_PLAIN = re.compile(r"(.+)/(W|b|scale|bias)")
_PLAIN_NAMES = {"W": "kernel", "b": "bias", "scale": "gamma", "bias": "beta"}
_BN_NAMES = {"mean": "moving_mean", "variance": "moving_variance", "gamma": "gamma", "beta": "beta"}
_STEP = "global_step"


def _per_layer(value: float | Mapping[str, float], layers: Iterable[str], what: str) -> Callable[[str], float]:
    if not isinstance(value, Mapping):
        return lambda layer: float(value)
    layers = list(layers)
    bad = [k for k in value if k not in layers]
    if bad:
        raise GrowstageError(f"{what}: {bad[0]!r} is not a standardlstm layer of the checkpoint"
                             f"{did_you_mean(bad[0], layers)} (standardlstm layers: {', '.join(layers) or 'none'})")
    return lambda layer: float(value.get(layer, 1.0))


def _group(names: Iterable[str], ignore: set[str]) -> tuple[dict, list[str], list[str]]:
    """``({(kind, layer): {part: name}}, training-state names, unknown names)``."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    state, unknown = [], []
    for name in names:
        if name in ignore:
            continue
        if name == _STEP or name.endswith("/" + _STEP):
            state.append(name)
            continue
        for kind, pattern in (("standardlstm", _STANDARD), ("nativelstm2", _NATIVE), ("batch_norm", _BATCH_NORM),
                              ("plain", _PLAIN)):
            m = pattern.fullmatch(name)
            if m:
                groups.setdefault((kind, m.group(1)), {})[m.group(2)] = name
                break
        else:
            unknown.append(name)
    for (kind, layer), parts in list(groups.items()):
        if kind == "nativelstm2" and "W_re" not in parts:  # a linear layer that happens to be named .../rec
            del groups[(kind, layer)]
            groups.setdefault(("plain", f"{layer}/rec"), {}).update(parts)
    return groups, state, unknown


def _lstm_entries(reader: Reader, kind: str, layer: str, parts: dict[str, str], forget_bias: float,
                  problems: list[str]) -> dict[str, Entry]:
    need = ("W", "W_re", "b") if kind == "nativelstm2" else ("kernel", "bias")
    missing = [p for p in need if p not in parts]
    if missing:
        problems.append(f"{layer}: a {kind} rec layer needs {', '.join(f'rec/{p}' for p in need)}; "
                        f"{', '.join(missing)} missing from {reader.path}")
        return {}
    cache: dict[str, dict[str, np.ndarray]] = {}

    def values() -> dict[str, np.ndarray]:
        if not cache:
            args = [reader.read(parts[p]) for p in need]
            cache.update(layouts.nativelstm2_to_keras(*args) if kind == "nativelstm2"
                         else layouts.standardlstm_to_keras(*args, forget_bias=forget_bias))
        return cache

    first = reader[parts[need[0]]]
    n4 = first.shape[-1]
    n_in = first.shape[0] - (n4 // 4 if kind == "standardlstm" else 0)
    # no split info: the input axis's blocks (the sources) are not in the file; planning derives both axes'
    # blocks from the target's (per gate, per source), which is what a grown layer needs
    shapes = {"cell/kernel": (n_in, n4), "cell/recurrent_kernel": (n4 // 4, n4), "cell/bias": (n4,)}
    def loader(k: str) -> Callable[[Any], np.ndarray]:
        return lambda index: values()[k] if index is None else values()[k][index]

    return {f"{layer}/{k}": Entry(s, first.dtype, loader(k), source=f"{reader.path}:{layer}/rec ({kind})")
            for k, s in shapes.items()}


def _simple_entry(reader: Reader, name: str, batch_norm: bool) -> Entry:
    e = reader[name]
    shape = e.shape[-1:] if batch_norm and e.shape else e.shape

    def load(index: Any) -> np.ndarray:
        v = reader.read(name)
        v = layouts.batch_norm_to_keras(v) if batch_norm else v
        return v if index is None else v[index]

    return Entry(tuple(shape), e.dtype, load, source=f"{reader.path}:{name}")


def _choose_layouts(groups: dict, layout: str | Mapping[str, str] | None, path: str, notes: list[str],
                    problems: list[str]) -> None:
    """Each rec layer's LSTM layout comes from its names; a layer with both layouts' names needs ``layout=``."""
    lstm_layers = sorted({l for k, l in groups if k in UNITS})
    if isinstance(layout, Mapping):
        bad = [l for l in layout if l not in lstm_layers]
        if bad:
            raise GrowstageError(f"layout: {bad[0]!r} is no LSTM layer of {path}{did_you_mean(bad[0], lstm_layers)}")
    for layer in lstm_layers:
        chosen = layout.get(layer) if isinstance(layout, Mapping) else layout
        if chosen is not None and chosen not in UNITS:
            raise GrowstageError(f"layout {chosen!r} for {layer!r}{did_you_mean(str(chosen), UNITS)} (layouts: "
                                 f"{', '.join(UNITS)})")
        found = [k for k in UNITS if (k, layer) in groups]
        if len(found) > 1 and chosen is None:
            problems.append(f"{layer}: {path} holds the names of both LSTM layouts (rec/W, rec/W_re, rec/b: "
                            f"nativelstm2; rec/lstm_cell/kernel, bias: standardlstm): ambiguous; pass "
                            f"layout={{{layer!r}: 'nativelstm2'}} or 'standardlstm'")
        elif chosen is not None and chosen not in found:
            problems.append(f"{layer}: layout={chosen!r} but {path} holds the names of {found[0]} only")
        elif len(found) > 1:
            other = next(k for k in found if k != chosen)
            dropped = groups.pop((other, layer))
            notes.append(f"{layer}: layout {chosen} chosen by layout=; the {other} names ignored: "
                         f"{', '.join(sorted(dropped.values()))}")


def from_returnn(reader: Reader, *, forget_bias: float | Mapping[str, float] = 1.0,
                 ignore: Iterable[str] = (), layout: str | Mapping[str, str] | None = None) -> Reader:
    """A reader of a RETURNN TF checkpoint, seen with growstage names and Keras layouts; see the module doc.

    ``forget_bias``: what each standardlstm cell added at run time (RETURNN's ``unit_opts``;
    a float, or ``{layer: float}`` with 1.0 for the others).  ``ignore``: names to drop.
    ``layout``: the LSTM layout (``nativelstm2`` or ``standardlstm``, or ``{layer: layout}``) where the
    names do not decide it (a layer holding both layouts' names); the notes say which was assumed.
    """
    ignore = set(ignore)
    bad = [n for n in ignore if n not in reader]
    if bad:
        raise GrowstageError(f"ignore: {bad[0]!r} is not in {reader.path}{did_you_mean(bad[0], reader)}")
    groups, state, unknown = _group(reader, ignore)
    problems = [f"{reader.path}: {n!r} is no RETURNN param name growstage knows (linear/softmax/conv W, b; rec "
                f"W, W_re, b or lstm_cell/kernel, bias; layer_norm scale, bias; batch_norm/*); pass it in ignore "
                f"to drop it" for n in unknown]
    notes = list(reader.notes)
    _choose_layouts(groups, layout, reader.path, notes, problems)
    fb = _per_layer(forget_bias, [l for k, l in groups if k == "standardlstm"], "forget_bias")
    entries: dict[str, Entry] = {}
    for (kind, layer), parts in sorted(groups.items(), key=lambda kv: kv[0][1]):
        if kind in UNITS:
            entries.update(_lstm_entries(reader, kind, layer, parts, fb(layer), problems))
            if kind == "standardlstm":
                notes.append(f"{layer}: standardlstm, forget_bias {fb(layer)} folded into the f-gate block of "
                             f"cell/bias (TF's LSTMCell adds it at run time; Keras stores it); LSTM layout "
                             f"standardlstm assumed (from its names rec/lstm_cell/kernel, bias)")
            else:
                notes.append(f"{layer}: nativelstm2 gates reordered c,i,f,o -> i,f,c,o; LSTM layout nativelstm2 "
                             f"assumed (from its names rec/W, W_re, b)")
            continue
        table = _BN_NAMES if kind == "batch_norm" else _PLAIN_NAMES
        for part, name in parts.items():
            entries[f"{layer}/{table[part]}"] = _simple_entry(reader, name, kind == "batch_norm")
    if problems:
        raise PlanError(problems, source=reader.path)
    optimizer = dict(reader.optimizer)
    optimizer.update({n: reader[n] for n in state})
    if state:
        notes.append(f"training state set apart: {', '.join(state)}")
    return Reader(reader.path, "returnn", entries, notes=notes, optimizer=optimizer, meta=dict(reader.meta),
                  closer=reader.close)


def _unit_of(units: str | Mapping[str, str], layer: str) -> str:
    unit = units.get(layer, "nativelstm2") if isinstance(units, Mapping) else units
    unit = {"lstm": "nativelstm2", "lstmp": "nativelstm2", "nativelstm": "nativelstm2"}.get(unit.lower(), unit.lower())
    if unit not in UNITS:
        raise GrowstageError(f"layer {layer!r}: unit {unit!r} has no RETURNN layout here{did_you_mean(unit, UNITS)} "
                             f"(units: {', '.join(UNITS)})")
    return unit


def to_returnn_names(values: Mapping[str, Any], *, units: str | Mapping[str, str] = "nativelstm2",
                     forget_bias: float | Mapping[str, float] = 1.0) -> dict[str, np.ndarray]:
    """``{growstage layer/param: array}`` -> ``{RETURNN name: array}`` (the inverse of :func:`from_returnn`).

    ``units``: the RETURNN unit of each LSTM layer (a str for all, or ``{layer: unit}``;
    default nativelstm2; the names of the RETURNN layers).  A Keras ``Bidirectional`` ``L`` becomes the
    rec layers ``L_fw`` and ``L_bw`` (directions 1 and -1).  A layer with ``moving_mean`` is a
    batch_norm, other ``gamma``/``beta`` a layer_norm.  Any other param name is an error naming it.
    """
    layers: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for key, value in values.items():
        # a Keras Bidirectional is RETURNN's pair of rec layers: directions 1 and -1, named as RETURNN nets do
        key = re.sub(r"/forward_layer/cell/", "_fw/cell/", re.sub(r"/backward_layer/cell/", "_bw/cell/", key))
        m = re.fullmatch(r"(.+?)/(cell/kernel|cell/recurrent_kernel|cell/bias|kernel|bias|gamma|beta|moving_mean|"
                         r"moving_variance)", key)
        if m is None:
            problems.append(f"{key!r} has no RETURNN counterpart here (Dense/Conv kernel, bias; LSTM cell/*; "
                            f"LayerNormalization/BatchNormalization gamma, beta, moving_*)")
            continue
        layers.setdefault(m.group(1), {})[m.group(2)] = np.asarray(value)
    if problems:
        raise PlanError(problems)
    lstm_layers = [l for l, ps in layers.items() if "cell/kernel" in ps]
    fb = _per_layer(forget_bias, [l for l in lstm_layers if _unit_of(units, l) == "standardlstm"], "forget_bias")
    out: dict[str, np.ndarray] = {}
    for layer, ps in layers.items():
        if "cell/kernel" in ps:
            if _unit_of(units, layer) == "nativelstm2":
                out.update({f"{layer}/rec/{k}": v for k, v in layouts.keras_to_nativelstm2(ps).items()})
            else:
                conv = layouts.keras_to_standardlstm(ps, forget_bias=fb(layer))
                out.update({f"{layer}/rec/lstm_cell/{k}": v for k, v in conv.items()})
        elif "moving_mean" in ps:
            inverse = {v: k for k, v in _BN_NAMES.items()}
            out.update({f"{layer}/batch_norm/v2_{inverse[k]}": v for k, v in ps.items()})
        else:
            inverse = {v: k for k, v in _PLAIN_NAMES.items()}
            if "gamma" in ps or "beta" in ps:  # layer_norm: scale / bias
                out.update({f"{layer}/{'scale' if k == 'gamma' else 'bias'}": v for k, v in ps.items()})
            else:
                out.update({f"{layer}/{inverse[k]}": v for k, v in ps.items()})
    return out
