"""Planning a transfer: decide, for every target param and every source param,
what will happen, before any value is touched.  Strict by default.

Example::

    >>> import keras, numpy as np
    >>> def build(n):
    ...     x = keras.Input((3,))
    ...     return keras.Model(x, keras.layers.Dense(n, name="out")(x))
    >>> p = plan(build(2), build(4), mode="subset")
    >>> [(r.target, r.action) for r in p.rows]
    [('out/kernel', 'padded'), ('out/bias', 'padded')]
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from growstage.framework.adapters.graph import LayerInfo, describe
from growstage.core.errors import GrowstageError, PlanError, ShapeError, did_you_mean
from growstage.core.growth import PRESERVING
from growstage.engine.report import PlanRow, render_json, render_table
from growstage.core.resize import derive_split
from growstage.engine.sources import apply_rules, edit_values, load_missing, resolve_source
from growstage.core.values import Snapshot

MODES = ("exact", "ifpossible", "subset", "reset")
FILLS = ("init", "zeros") + PRESERVING


def _check_fill(fill: Any, where: str) -> None:
    if isinstance(fill, str) and fill not in FILLS:
        raise GrowstageError(f"unknown fill {fill!r} for {where}{did_you_mean(fill, FILLS)} "
                             f"(fills: {', '.join(FILLS)}, a number, or a callable (shape, dtype) -> array)")


def _fill_label(fill: Any) -> str:
    return fill if isinstance(fill, str) else ("callable" if callable(fill) else repr(fill))


@dataclass
class Plan:
    """The full list of what a transfer will do; ``str(plan)`` is the dry-run table."""

    rows: list[PlanRow]
    source: Snapshot
    targets: dict[str, LayerInfo]
    customs: dict[str, Callable] = field(default_factory=dict)
    fills: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fill_seed: int = 0
    fill_noise: float = 0.0
    on_nonfinite: str = "report"
    pending: Any = None  # variables of a deferred build (adapters.deferred), filled by apply()

    def table(self, *, collapse_layers: bool = True) -> str:
        return render_table(self.rows, collapse_layers=collapse_layers, notes=self.notes)

    def to_json(self) -> str:
        return render_json(self.rows, notes=self.notes)

    def __str__(self) -> str:
        return self.table()

    def rows_for(self, layer: str) -> list[PlanRow]:
        key = (id(self.rows), len(self.rows))
        if getattr(self, "_index_key", None) != key:  # one pass, not one per layer: 2,000-layer models
            index: dict[str | None, list[PlanRow]] = {}
            for r in self.rows:
                index.setdefault(r.layer, []).append(r)
            self._index, self._index_key = index, key
        return self._index.get(layer, [])


def _action_for_shapes(old_split, new_split) -> tuple[str, str]:
    grew, shrank = [], []
    for axis, (o, n) in enumerate(zip(old_split, new_split)):
        if any(b > a for a, b in zip(o, n)):
            grew.append(axis)
        if any(b < a for a, b in zip(o, n)):
            shrank.append(axis)
    parts = []
    if shrank:
        parts.append("sliced axis " + ",".join(map(str, shrank)))
    if grew:
        parts.append("padded axis " + ",".join(map(str, grew)))
    blocks = [len(n) for n in new_split if len(n) > 1]
    if blocks:
        parts.append("block-wise " + "x".join(map(str, blocks)))
    return ("padded" if grew else "sliced"), ", ".join(parts)


def plan(
    source: Any,
    model: Any,
    *,
    on_values: Callable[[dict], dict | None] | None = None,
    allow_auto_names: bool = False,
    **options: Any,
) -> Plan:
    """Plan moving ``source`` into ``model``; raises :class:`PlanError` listing every problem.

    ``source``: a Snapshot, a growstage HDF5 path, a Keras model or a values dict.
    ``mode``: ``exact`` | ``ifpossible`` | ``subset`` | ``reset`` (RETURNN's
    ``copy_param_mode``); ``modes`` overrides it per target layer.
    ``fill``: what padded entries hold: ``init`` (the target's fresh init),
    ``zeros``, a number or a callable, or a function-preserving fill
    (``preserve``, ``net2net``, ``double``: see :mod:`growstage.core.growth`, with
    ``fill_seed`` and ``fill_noise``); ``fills`` per target layer.
    ``custom_param_importer``: per target layer, a callable
    ``(layer, values, *, context)`` or a mode string.
    ``rename``: ``{source_layer: target_layer}``; a list of targets copies one source
    layer into each of them (depth by stacking, :mod:`growstage.core.stacking`).  ``ignore``: source layers or
    ``layer/param`` keys not to use.  ``ignore_missing``: target params without
    a source keep their init.  ``ignore_unused``: source params without a home
    are allowed.  ``allow_new_layers``: a target layer absent from the source
    keeps its init (growing deeper), while a missing param of a layer that
    exists stays an error.  ``on_values``: edits the source values dict first (RETURNN's
    ``init_new_network_callback``).  ``allow_cast``: a dtype change is allowed.
    ``rules``: a :class:`~growstage.Rules` (or a dict of its fields) renaming
    checkpoint names to target ``layer/param`` names.  ``source_model``: a model
    of the architecture that wrote a Keras weight file, to name its layers
    (default: ``model``).  ``custom_missing_load_func(name, shape, reader)``:
    returns a value for a target param nothing else feeds, or None.
    ``on_nonfinite``: ``report`` (default: NaN/Inf source values are copied and
    counted in the report's notes) or ``error`` (the transfer fails, nothing changes).
    """
    known = [k for k in inspect.signature(plan_for).parameters if k not in ("src", "targets")]
    extra = ["on_values", "allow_auto_names", "rules", "source_model"]
    for key in options:
        if key not in known + extra:
            raise GrowstageError(f"unknown option {key!r}{did_you_mean(key, known + extra)}")
    rules, source_model = options.pop("rules", None), options.pop("source_model", None)
    src = resolve_source(source, allow_auto_names=allow_auto_names, naming_model=source_model or model)
    targets = describe(model, allow_auto_names=allow_auto_names)
    if rules is not None or not isinstance(source, Snapshot) and isinstance(source, (str, os.PathLike)):
        src = apply_rules(src, rules, targets)
    if on_values is not None:
        src = edit_values(src, on_values)
    try:
        return plan_for(src, targets, **options)
    except PlanError as e:
        if e.source is None and src.meta.get("_path"):
            raise PlanError(e.problems, source=str(src.meta["_path"])) from None
        raise


def plan_for(
    src: Snapshot,
    targets: dict[str, LayerInfo],
    *,
    mode: str = "exact",
    fill: Any = "init",
    modes: Mapping[str, str] | None = None,
    fills: Mapping[str, Any] | None = None,
    custom_param_importer: Mapping[str, Callable | str] | None = None,
    rename: Mapping[str, str | Iterable[str]] | None = None,
    ignore: Iterable[str] = (),
    ignore_missing: bool = False,
    ignore_unused: bool = False,
    allow_new_layers: bool = False,
    allow_cast: bool = False,
    custom_missing_load_func: Callable[[str, tuple, Any], Any] | None = None,
    fill_seed: int = 0,
    fill_noise: float = 0.0,
    on_nonfinite: str = "report",
) -> Plan:
    """:func:`plan` on an already resolved source and described target layers (options as there)."""
    modes, fills = dict(modes or {}), dict(fills or {})
    customs_in = dict(custom_param_importer or {})
    rename, ignore = dict(rename or {}), list(ignore)
    problems: list[str] = []

    def unknown(kind: str, name: str, pool: Iterable[str], option: str) -> None:
        problems.append(f"{option}: unknown {kind} {name!r}{did_you_mean(name, pool)}")

    for m in [mode, *modes.values(), *(v for v in customs_in.values() if isinstance(v, str))]:
        if m not in MODES:
            raise GrowstageError(f"unknown mode {m!r}{did_you_mean(m, MODES)} (modes: {', '.join(MODES)})")
    _check_fill(fill, "fill")
    if on_nonfinite not in ("report", "error"):
        raise GrowstageError(f"on_nonfinite must be 'report' or 'error', not {on_nonfinite!r}")
    for option, mapping in (("modes", modes), ("fills", fills), ("custom_param_importer", customs_in)):
        for name in mapping:
            if name not in targets:
                unknown("target layer", name, targets, option)
    for name, f in fills.items():
        _check_fill(f, f"fills[{name!r}]")
    rename = _rename_lists(rename, src, targets, unknown, problems)
    src_keys = set(src.keys_flat())
    ignored_layers, ignored_keys = set(), set()
    for item in ignore:
        if item in src.layers:
            ignored_layers.add(item)
        elif item in src_keys:
            ignored_keys.add(item)
        else:
            unknown("source layer or param", item, list(src.layers) + sorted(src_keys), "ignore")

    customs: dict[str, Callable] = {}
    for name, c in customs_in.items():
        if isinstance(c, str):
            modes[name] = c
        elif callable(c):
            customs[name] = c
        else:
            problems.append(f"custom_param_importer[{name!r}] is a {type(c).__name__}; give a callable or a mode string")

    inv_rename = {new: old for old, news in rename.items() for new in news}

    def source_layer_of(lname: str) -> str | None:
        s_name = inv_rename.get(lname, lname)
        return None if s_name in rename and lname not in rename[s_name] else s_name

    if custom_missing_load_func is not None:
        src = load_missing(src, targets, source_layer_of, custom_missing_load_func)
    used: set[str] = set()
    rows: list[PlanRow] = []
    growth_notes: list[str] = []

    starts: dict = {}  # new layer -> (action, reason), decided once per layer
    new_layers = {l for l in targets if allow_new_layers and (source_layer_of(l) not in src.layers
                                                              or source_layer_of(l) in ignored_layers)}

    for lname, info in targets.items():
        src_lname = source_layer_of(lname)  # None: this source layer was renamed away to another target
        src_layer = src.layers.get(src_lname) if src_lname is not None and src_lname not in ignored_layers else None
        lmode = modes.get(lname, mode)
        lfill = fills.get(lname, fill)
        if lname in customs:
            for key in (f"{src_lname}/{p}" for p in (src_layer or {})):
                if key not in ignored_keys:
                    used.add(key)
            for spec in info.params:
                rows.append(PlanRow(lname, spec.name, f"{src_lname}/{spec.name}" if src_layer and spec.name in src_layer else None,
                                    "custom", None, spec.shape, "custom_param_importer", mode="custom"))
            continue
        for spec in info.params:
            key = f"{src_lname}/{spec.name}"
            prm = src_layer.get(spec.name) if src_layer is not None and key not in ignored_keys else None
            base = dict(new_shape=spec.shape, new_split=spec.split, mode=lmode)
            if lmode == "reset":
                if prm is not None:
                    used.add(key)
                rows.append(PlanRow(lname, spec.name, key if prm is not None else None, "kept-init",
                                    prm.shape if prm is not None else None, reason="mode reset", **base))
                continue
            if prm is None:
                if allow_new_layers and src_layer is None:
                    rows.append(_new_layer_row(targets, lname, spec, lfill, new_layers, base, starts))
                elif ignore_missing:
                    rows.append(PlanRow(lname, spec.name, None, "kept-init", reason="no source (ignore_missing)", **base))
                else:
                    pool = sorted(src_keys)
                    problems.append(f"target param {lname}/{spec.name} gets no value: the source has no {key!r}"
                                    f"{did_you_mean(key, pool)}; pass ignore_missing=True to keep its init, "
                                    "or rename= to map a source layer onto it")
                continue
            used.add(key)
            if prm.dtype != np.dtype(spec.variable.dtype):
                if not allow_cast:
                    problems.append(f"{lname}/{spec.name}: source dtype {prm.dtype} differs from target dtype "
                                    f"{np.dtype(spec.variable.dtype)}; pass allow_cast=True to convert")
                    continue
                growth_notes.append(f"{lname}/{spec.name}: cast {prm.dtype} -> {np.dtype(spec.variable.dtype)}")
            if prm.shape == spec.shape:
                rows.append(PlanRow(lname, spec.name, key, "copied", prm.shape, old_split=prm.split, **base))
                continue
            if lmode == "exact":
                problems.append(f"{lname}/{spec.name}: shape {prm.shape} -> {spec.shape} under mode 'exact'; "
                                "use mode='subset' to slice/pad block-wise or 'ifpossible' to keep the init")
                continue
            if lmode == "ifpossible":
                rows.append(PlanRow(lname, spec.name, key, "kept-init", prm.shape,
                                    reason="shape differs; ifpossible keeps the init", **base))
                continue
            # subset
            if len(prm.shape) != len(spec.shape):
                problems.append(f"{lname}/{spec.name}: cannot resize {prm.shape} to {spec.shape} (rank differs)")
                continue
            derived = prm.split is None
            try:
                old_split = derive_split(spec.split, prm.shape) if derived else prm.split
            except ShapeError as e:
                problems.append(f"{lname}/{spec.name}: {e}")
                continue
            mism = [a for a, (o, n) in enumerate(zip(old_split, spec.split)) if len(o) != len(n)]
            if mism:
                problems.append(f"{lname}/{spec.name}: axis {mism[0]} has blocks {old_split[mism[0]]} in the source "
                                f"but {spec.split[mism[0]]} in the target; give a custom_param_importer for this layer")
                continue
            action, reason = _action_for_shapes(old_split, spec.split)
            if action == "padded" and lfill in PRESERVING:
                problems.extend(_check_growth(lname, spec.name, lfill, old_split, spec.split))
                if info.kind == "LayerNormalization" and lfill in ("preserve", "net2net"):
                    growth_notes.append(f"{lname}: LayerNormalization over a widened axis: with fill {lfill!r} the old "
                                        "units' outputs change (mean and variance include the new units); "
                                        "fill='double' keeps them exactly")
            rows.append(PlanRow(lname, spec.name, key, action, prm.shape, reason=reason, old_split=old_split,
                                fill=_fill_label(lfill) if action == "padded" else None, split_derived=derived, **base))

    target_keys = [f"{l}/{p.name}" for l, i in targets.items() for p in i.params]
    for lname, params in src.layers.items():
        for pname, prm in params.items():
            key = f"{lname}/{pname}"
            if key in used:
                continue
            if lname in ignored_layers or key in ignored_keys:
                rows.append(PlanRow(None, pname, key, "ignored", prm.shape, reason="in ignore list"))
            elif ignore_unused:
                rows.append(PlanRow(None, pname, key, "unused", prm.shape, reason="no target (ignore_unused)"))
            else:
                problems.append(f"source param {key} has no home in the target{did_you_mean(key, target_keys)}; "
                                "list it in ignore=[...], pass ignore_unused=True, or rename= its layer")
    if problems:
        raise PlanError(problems)
    notes = list(dict.fromkeys(list(src.notes) + [f"{n}: {x}" for n, i in targets.items() for x in i.notes]
                               + growth_notes))
    return Plan(rows, src, targets, customs, {n: fills.get(n, fill) for n in targets}, notes,
                fill_seed=int(fill_seed), fill_noise=float(fill_noise), on_nonfinite=on_nonfinite)


def _rename_lists(rename: Mapping, src: Snapshot, targets: Mapping, unknown: Callable, problems: list[str]) -> dict:
    """``{source layer: [target layers]}``: one source layer may feed several targets (depth by stacking)."""
    out = {old: [new] if isinstance(new, str) else list(new) for old, new in rename.items()}
    for old, news in out.items():
        if old not in src.layers:
            unknown("source layer", old, src.layers, "rename")
        for new in news:
            if new not in targets:
                unknown("target layer", new, targets, "rename")
    fed = [new for news in out.values() for new in news]
    for new in sorted({n for n in fed if fed.count(n) > 1}):
        problems.append(f"rename: target layer {new!r} is named by more than one source layer; give it one")
    return out


def _new_layer_row(targets: dict[str, LayerInfo], lname: str, spec: Any, fill: Any, new_layers: set[str],
                   base: dict, starts: dict) -> PlanRow:
    if not (isinstance(fill, str) and fill in PRESERVING):
        return PlanRow(lname, spec.name, None, "kept-init", reason="new layer", **base)
    from growstage.framework.adapters.deepen import new_layer_start, zeroed_params

    if "_ids" not in starts:
        starts["_ids"] = {id(targets[n].layer) for n in new_layers}
    if lname not in starts:
        starts[lname] = new_layer_start(targets, lname, new_layers, new_ids=starts["_ids"])
    action, reason = starts[lname]
    if action == "zeroed" and spec.name not in zeroed_params(targets[lname]):
        action = "kept-init"
    return PlanRow(lname, spec.name, None, action, reason=reason, fill=fill, **base)


def _check_growth(lname: str, pname: str, fill: str, old_split, new_split) -> list[str]:
    out = []
    for axis, (o_blocks, n_blocks) in enumerate(zip(old_split, new_split)):
        for o, n in zip(o_blocks, n_blocks):
            if n > o and o == 0:
                out.append(f"{lname}/{pname}: fill {fill!r} copies old units, but axis {axis} grows from 0")
            elif n > o and fill == "double" and n != 2 * o:
                out.append(f"{lname}/{pname}: fill 'double' needs each grown block exactly doubled; axis {axis} has "
                           f"a block {o} -> {n}; use fill='net2net' or 'preserve' for other factors")
            elif n > o and fill in ("clone", "lemon") and n % o:
                out.append(f"{lname}/{pname}: fill {fill!r} clones each unit n times, so a block must grow by a "
                           f"whole factor; axis {axis} has a block {o} -> {n}; use fill='net2net' for others")
    return out
