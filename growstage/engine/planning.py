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

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from growstage.core.errors import PlanError
from growstage.core.values import Snapshot
from growstage.engine.options import TransferOptions
from growstage.core.vocab import Action, Fill, Mode
from growstage.engine.planner import Planner, fill_label
from growstage.engine.report import PlanRow, render_json, render_table
from growstage.engine.sources import apply_rules, edit_values, is_flat_source, resolve_source
from growstage.framework.adapters.graph import LayerInfo, describe


@dataclass
class Plan:
    """The full list of what a transfer will do; ``str(plan)`` is the dry-run table."""

    rows: list[PlanRow]
    source: Snapshot
    targets: dict[str, LayerInfo]
    options: TransferOptions = field(default_factory=TransferOptions)
    notes: list[str] = field(default_factory=list)
    pending: Any = None  # variables of a deferred build (framework.variables), filled by apply()
    source_path: str | None = None  # the file the source came from, for error messages

    @cached_property
    def customs(self) -> dict[str, Callable]:
        """Target layers whose values a custom importer computes."""
        return {n: c for n, c in self.options.custom_param_importer.items() if callable(c)}

    @cached_property
    def fills(self) -> dict[str, Any]:
        return {n: self.options.fill_for(n) for n in self.targets}

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


def plan(source: Any, model: Any, options: TransferOptions | None = None, **kwargs: Any) -> Plan:
    """Plan moving ``source`` into ``model``; raises :class:`PlanError` listing every problem.

    Options come as keywords or as a :class:`~growstage.TransferOptions` (keywords override it).
    ``mode`` defaults to ``exact``: any shape change is an error until you choose how to adapt it.

    ``source``: a Snapshot, a growstage HDF5 path, a Keras model or a values dict.
    ``mode``: ``exact`` | ``ifpossible`` | ``subset`` | ``reset`` (RETURNN's
    ``copy_param_mode``); ``modes`` overrides it per target layer.
    ``fill``: what padded entries hold: ``init`` (the target's fresh init),
    ``zeros``, a number or a callable, or a function-preserving fill
    (``preserve``, ``net2net``, ``double``, ``clone``, ``lemon``: see :mod:`growstage.core.growth`, with
    ``fill_seed`` and ``fill_noise``); ``fills`` per target layer.
    ``custom_param_importer``: per target layer, a callable
    ``(layer, values, *, context)`` or a mode string.
    ``rename``: ``{source_layer: target_layer}``; a list of targets copies one source
    layer into each of them (depth by stacking, :mod:`growstage.core.stacking`).  ``ignore``: source layers or
    ``layer/param`` keys not to use (a target layer whose source is ignored keeps its
    values).  ``only``: the target layers to load; every other target layer keeps its
    values and every source layer feeding none of them is reported ``ignored``.  ``ignore_missing``: target params without
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
    ``allow_large``: read HDF5 files whose datasets declare far more bytes than the file holds
    (compressed or sparse; refused by default, as a file could exhaust memory that way).
    """
    opts = TransferOptions.from_kwargs(options, **kwargs)
    if not hasattr(model, "layers") and hasattr(model, "weights"):
        from growstage.core.errors import GrowstageError

        raise GrowstageError(f"model: {type(model).__name__} {getattr(model, 'name', '')!r} is a layer, not a model; "
                             "pass the model that holds it, or use set_param_values_by_dict(layer, values)")
    src = resolve_source(source, allow_auto_names=opts.allow_auto_names, naming_model=opts.source_model or model,
                         allow_large=opts.allow_large, preset=opts.preset)
    targets = describe(model, allow_auto_names=opts.allow_auto_names)
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    # flat checkpoint names (a path, an open Reader): cut into layer/param at the target's layer names
    if opts.rules is not None or is_flat_source(source):
        src = apply_rules(src, opts.rules, targets)
    if opts.on_values is not None:
        src = edit_values(src, opts.on_values)
    try:
        p = plan_for(src, targets, opts)
        p.notes += hf_differences(src, model, opts)
    except PlanError as e:
        if e.source is None and (path or src.path):
            raise PlanError(e.problems, source=str(path or src.path)) from None
        raise
    p.source_path = path or src.path
    return p


def plan_for(src: Snapshot, targets: dict[str, LayerInfo], options: TransferOptions | None = None,
             **kwargs: Any) -> Plan:
    """:func:`plan` on an already resolved source and described target layers (options as there)."""
    opts = TransferOptions.from_kwargs(options, **kwargs)
    planner = Planner(src, targets, opts)
    planner.check_names()
    planner.prepare()
    for lname, info in targets.items():
        planner.plan_layer(lname, info)
    if planner.new_layers:
        planner.post_ln_deepening()
    planner.unused_rows()
    planner.preserve_findings()
    if planner.problems:
        raise PlanError(planner.problems)
    annotate_sources(planner.rows, src)
    name_origins(planner.rows, planner.src)
    padded = {r.layer for r in planner.rows if r.action == Action.PADDED}
    layer_notes = [f"{n}: {x}" for n, i in targets.items()
                   for x in i.notes + (i.width_notes if n in padded else [])]
    notes = list(dict.fromkeys(list(planner.src.notes) + layer_notes + planner.notes
                               + idle_options(planner.rows, opts)))
    return Plan(planner.rows, planner.src, targets, opts, notes)


def annotate_sources(rows: list[PlanRow], src: Snapshot) -> None:
    """Each row's ``source_name`` (the tensor's own name) and ``rule`` (what mapped it: rules, rename=)."""
    for r in rows:
        if r.source is None:
            continue
        own, rule = src.origins.get(r.source, (r.source, None))
        parts = [rule] if rule else []
        if r.layer is not None and r.source_layer not in (None, r.layer):
            parts.append(f"rename {r.source_layer!r} -> {r.layer!r}")
        if parts:
            r.source_name, r.rule = own, "; ".join(parts)


def name_origins(rows: list[PlanRow], src: Snapshot) -> None:
    """A row's ``source_name`` and ``rule`` where the source's reader knows the original file's tensor
    (a Hugging Face folder's tensor, slice and layout, mapped by a preset)."""
    layers, preset = src.layers, src.meta.get("hf_preset")
    if not preset:  # other readers' entries name their own storage (an npz member), not a renamed tensor
        return
    for r in rows:
        if r.source is None or r.param is None:
            continue
        prm = layers.get(r.source_layer or "", {}).get(r.param)
        origin = getattr(getattr(prm, "value", None), "origin", "")
        if origin and origin != r.source:
            r.source_name, r.rule = origin, f"preset {preset!r}"


def hf_differences(src: Snapshot, model: Any, opts: TransferOptions) -> list[str]:
    """Notes on non-weight settings (norm epsilon, activation, rope theta, vocabulary) on which a Hugging
    Face folder's config.json and the keras_hub target disagree; under mode 'exact' a PlanError."""
    preset, config = src.meta.get("hf_preset"), src.meta.get("hf_config")
    if not preset or not isinstance(config, dict):
        return []
    from growstage.io.readers.hf_presets import family

    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "get_config") or "vocabulary_size" not in backbone.get_config():
        return [f"{preset}: the target is not a keras_hub backbone or task model; config.json not compared"]
    found = [f"{preset}: {d}" for d in family(preset).differences(config, backbone)]
    if found and opts.mode == Mode.EXACT:
        raise PlanError(found + ["mode='exact' refuses a target whose settings differ from config.json; build "
                                 "the target to match, or pass mode='subset' to accept (the plan notes them)"])
    return found


_NOISY = (Fill.NET2NET, Fill.CLONE, Fill.LEMON)  # the fills fill_noise acts on (core.growth)


def idle_options(rows: list[PlanRow], opts: TransferOptions) -> list[str]:
    """Notes on options that, combined as given, acted on nothing in this plan.

    Example::

        >>> idle_options([], TransferOptions(fill_noise=0.1))[0][:30]
        'fill_noise=0.1 had no effect: '
    """
    out = []
    if opts.fill_noise and not any(r.action == Action.PADDED and r.fill in _NOISY for r in rows):
        out.append(f"fill_noise={opts.fill_noise:g} had no effect: it perturbs entries that fill 'net2net', "
                   "'clone' or 'lemon' duplicates, and no param was padded with one of those")
    kept = sorted({r.layer for r in rows if r.action == Action.KEPT_INIT and r.mode == Mode.IFPOSSIBLE
                   and r.source is not None and opts.fill_for(r.layer) != Fill.INIT})
    if kept:
        fills = sorted({fill_label(opts.fill_for(l)) for l in kept})
        out.append(f"fill {', '.join(map(repr, fills))} had no effect on {', '.join(kept[:5])}"
                   f"{' ...' if len(kept) > 5 else ''}: mode 'ifpossible' keeps the new init where a shape "
                   "changed; mode='subset' pads with the fill")
    return out
