"""The decisions behind a plan, one target param at a time: a :class:`Planner` walks the target
layers, asks each param's source, mode and fill, and collects rows and problems (all problems
of a plan are reported at once).  :func:`growstage.engine.planning.plan_for` is its entry point.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from growstage.core.errors import ShapeError, did_you_mean
from growstage.core.resize import derive_split
from growstage.core.values import Param, Snapshot
from growstage.core.growth import grouped_split
from growstage.core.vocab import GROUPED_ROLES, PRESERVING, Action, Fill, Mode, Role
from growstage.engine.options import TransferOptions
from growstage.engine.report import PlanRow
from growstage.engine.sources import load_missing
from growstage.framework.adapters.graph import LayerInfo


def fill_label(fill: Any) -> str:
    if isinstance(fill, str):
        return str.__str__(fill)
    return "callable" if callable(fill) else repr(fill)


def is_preserving(fill: Any) -> bool:
    """Whether ``fill`` names a function-preserving fill (a number or callable never does)."""
    return isinstance(fill, str) and fill in PRESERVING


def action_for_shapes(old_split, new_split) -> tuple[str, str]:
    """``padded`` when any block grows, else ``sliced``; the reason names the axes and blocks."""
    grew = [a for a, (o, n) in enumerate(zip(old_split, new_split)) if any(y > x for x, y in zip(o, n))]
    shrank = [a for a, (o, n) in enumerate(zip(old_split, new_split)) if any(y < x for x, y in zip(o, n))]
    parts = []
    if shrank:
        parts.append("sliced axis " + ",".join(map(str, shrank)))
    if grew:
        parts.append("padded axis " + ",".join(map(str, grew)))
    blocks = [len(n) for n in new_split if len(n) > 1]
    if blocks:
        parts.append("block-wise " + "x".join(map(str, blocks)))
    return (Action.PADDED if grew else Action.SLICED), ", ".join(parts)


class Planner:
    """One plan in the making: the source, the targets, the options and what was decided so far."""

    def __init__(self, src: Snapshot, targets: dict[str, LayerInfo], opts: TransferOptions) -> None:
        self.src, self.targets, self.opts = src, targets, opts
        self.problems: list[str] = []
        self.rows: list[PlanRow] = []
        self.used: set[str] = set()
        self.notes: list[str] = []
        self.customs = {n: c for n, c in opts.custom_param_importer.items() if callable(c)}
        self.modes = {**opts.modes, **{n: c for n, c in opts.custom_param_importer.items() if isinstance(c, str)}}
        self.src_keys = set(src.keys_flat())
        self.ignored_layers = {i for i in opts.ignore if i in src.layers}
        self.ignored_keys = {i for i in opts.ignore if i not in src.layers and i in self.src_keys}
        self.rename = {old: (new,) if isinstance(new, str) else tuple(new) for old, new in opts.rename.items()}
        self.inv_rename = {new: old for old, news in self.rename.items() for new in news}
        self.only = set(opts.only) if opts.only is not None else None
        self.starts: dict = {}  # new layer -> (action, reason), decided once per layer
        self.new_layers: set[str] = set()

    def unknown(self, kind: str, name: str, pool: Any, option: str) -> None:
        self.problems.append(f"{option}: unknown {kind} {name!r}{did_you_mean(name, pool)}")

    def check_names(self) -> None:
        """Every name in an option must match something: layer names in modes/fills/importers/rename/ignore."""
        o = self.opts
        for option, mapping in (("modes", o.modes), ("fills", o.fills), ("custom_param_importer", o.custom_param_importer)):
            for name in mapping:
                if name not in self.targets:
                    self.unknown("target layer", name, self.targets, option)
        for old, news in self.rename.items():
            if old not in self.src.layers:
                self.unknown("source layer", old, self.src.layers, "rename")
            for new in news:
                if new not in self.targets:
                    self.unknown("target layer", new, self.targets, "rename")
        fed = [new for news in self.rename.values() for new in news]
        for new in sorted({n for n in fed if fed.count(n) > 1}):
            self.problems.append(f"rename: target layer {new!r} is named by more than one source layer; give it one")
        for item in o.ignore:
            if item not in self.src.layers and item not in self.src_keys:
                self.unknown("source layer or param", item, list(self.src.layers) + sorted(self.src_keys), "ignore")
        for name in o.only or ():
            if name in self.targets:
                continue  # a target layer (also in ignore=: kept, and its rows say so)
            if "/" in name and name.split("/")[0] in self.targets:
                self.problems.append(f"only: {name!r} is a param; only= takes layer names: did you mean "
                                     f"{name.split('/')[0]!r}?")
                continue
            self.unknown("target layer", name, self.targets, "only")
        if o.only is not None and not o.only:
            self.problems.append("only=[] selects no layer: name the target layers to load, or leave only out")

    def source_layer_of(self, lname: str) -> str | None:
        """The source layer feeding target ``lname``; None when that name was renamed away to another target."""
        s_name = self.inv_rename.get(lname, lname)
        return None if s_name in self.rename and lname not in self.rename[s_name] else s_name

    def prepare(self) -> None:
        if self.opts.custom_missing_load_func is not None:
            self.src = load_missing(self.src, self.targets, self.source_layer_of, self.opts.custom_missing_load_func)
        if self.opts.allow_new_layers:
            self.new_layers = {l for l in self.targets if self.source_layer_of(l) not in self.src.layers
                               and (self.only is None or l in self.only)}

    def plan_layer(self, lname: str, info: LayerInfo) -> None:
        if self.only is not None and lname not in self.only:
            for spec in info.params:  # untouched: the values it has stay
                self.rows.append(PlanRow(lname, spec.name, None, Action.KEPT_INIT, new_shape=spec.shape,
                                         new_split=spec.split, reason="not in only=: untouched"))
            return
        src_lname = self.source_layer_of(lname)
        src_layer = (self.src.layers.get(src_lname)
                     if src_lname is not None and src_lname not in self.ignored_layers else None)
        if lname in self.customs:
            self.custom_rows(lname, info, src_lname, src_layer)
            return
        mode, fill = self.modes.get(lname, self.opts.mode), self.opts.fill_for(lname)
        for spec in info.params:
            key = f"{src_lname}/{spec.name}"
            prm = src_layer.get(spec.name) if src_layer is not None and key not in self.ignored_keys else None
            base = dict(new_shape=spec.shape, new_split=spec.split, mode=str.__str__(mode))
            if mode == Mode.RESET:
                if prm is not None:
                    self.used.add(key)
                self.rows.append(PlanRow(lname, spec.name, key if prm is not None else None, Action.KEPT_INIT,
                                         prm.shape if prm is not None else None, reason="mode reset", **base))
            elif prm is None:
                self.missing_row(lname, spec, key, src_layer, fill, base)
            else:
                self.used.add(key)
                self.param_row(lname, info, spec, key, prm, mode, fill, base)

    def custom_rows(self, lname: str, info: LayerInfo, src_lname: str | None, src_layer: dict | None) -> None:
        for key in (f"{src_lname}/{p}" for p in (src_layer or {})):
            if key not in self.ignored_keys:
                self.used.add(key)
        for spec in info.params:
            source = f"{src_lname}/{spec.name}" if src_layer and spec.name in src_layer else None
            self.rows.append(PlanRow(lname, spec.name, source, Action.CUSTOM, None, spec.shape,
                                     "custom_param_importer", mode="custom"))

    def missing_row(self, lname: str, spec: Any, key: str, src_layer: dict | None, fill: Any, base: dict) -> None:
        if self.source_layer_of(lname) in self.ignored_layers:  # the user named it: kept, not a "new layer"
            self.rows.append(PlanRow(lname, spec.name, None, Action.KEPT_INIT, reason="source layer in ignore=: kept",
                                     **base))
        elif self.opts.allow_new_layers and src_layer is None:
            self.rows.append(self.new_layer_row(lname, spec, fill, base))
        elif self.opts.ignore_missing:
            self.rows.append(PlanRow(lname, spec.name, None, Action.KEPT_INIT, reason="no source (ignore_missing)",
                                     **base))
        else:
            self.problems.append(f"target param {lname}/{spec.name} gets no value: the source has no {key!r}"
                                 f"{did_you_mean(key, sorted(self.src_keys))}; pass ignore_missing=True to keep "
                                 "its init, or rename= to map a source layer onto it")

    def param_row(self, lname: str, info: LayerInfo, spec: Any, key: str, prm: Param, mode: Mode, fill: Any,
                  base: dict) -> None:
        target_dtype = np.dtype(spec.variable.dtype)
        if prm.dtype != target_dtype:
            if not self.opts.allow_cast:
                self.problems.append(f"{lname}/{spec.name}: source dtype {prm.dtype} differs from target dtype "
                                     f"{target_dtype}; pass allow_cast=True to convert")
                return
            self.notes.append(f"{lname}/{spec.name}: cast {prm.dtype} -> {target_dtype}")
        if prm.shape == spec.shape:
            self.rows.append(PlanRow(lname, spec.name, key, Action.COPIED, prm.shape, old_split=prm.split, **base))
        elif mode == Mode.EXACT:
            self.problems.append(f"{lname}/{spec.name}: shape {prm.shape} -> {spec.shape} under mode 'exact'; "
                                 "use mode='subset' to slice/pad block-wise or 'ifpossible' to keep the init")
        elif mode == Mode.IFPOSSIBLE:
            self.rows.append(PlanRow(lname, spec.name, key, Action.KEPT_INIT, prm.shape,
                                     reason="shape differs; ifpossible keeps the init", **base))
        else:
            self.subset_row(lname, info, spec, key, prm, fill, base)

    def subset_row(self, lname: str, info: LayerInfo, spec: Any, key: str, prm: Param, fill: Any,
                   base: dict) -> None:
        if len(prm.shape) != len(spec.shape):
            self.problems.append(f"{lname}/{spec.name}: cannot resize {prm.shape} to {spec.shape} (rank differs)")
            return
        derived = prm.split is None
        try:
            old_split = derive_split(spec.split, prm.shape) if derived else prm.split
        except ShapeError as e:
            self.problems.append(f"{lname}/{spec.name}: {e}")
            return
        old_split = grouped_split(old_split, spec.split, spec.roles)  # KV heads added: new query groups
        mism = [a for a, (o, n) in enumerate(zip(old_split, spec.split)) if len(o) != len(n)]
        if mism:
            self.problems.append(f"{lname}/{spec.name}: axis {mism[0]} has blocks {old_split[mism[0]]} in the source "
                                 f"but {spec.split[mism[0]]} in the target; give a custom_param_importer for this layer")
            return
        action, reason = action_for_shapes(old_split, spec.split)
        if action == Action.PADDED and is_preserving(fill):
            self.problems.extend(check_growth(lname, spec.name, fill, old_split, spec.split, spec.roles))
            if getattr(spec, "normalizes", False) and fill in (Fill.PRESERVE, Fill.NET2NET):
                where = lname if info.kind == "LayerNormalization" else f"{lname}/{spec.name.rsplit('/', 1)[0]}"
                self.notes.append(f"{where}: LayerNormalization over a widened axis: with fill {fill_label(fill)!r} the "
                                  "old units' outputs change (mean and variance include the new units); "
                                  "fill='double', 'clone' or 'lemon' keeps them exactly")
            if fill == Fill.NET2NET and any(r in (Role.STREAM_GAIN, Role.STREAM_OUTPUT) for r in spec.roles):
                self.notes.append(f"{lname}/{spec.name}: RMSNorm over a widened stream: fill 'net2net' copies units "
                                  "unevenly, so the mean square changes and so do the outputs; fill='double', 'clone', "
                                  "'lemon' or 'preserve' keeps them exactly")
        self.rows.append(PlanRow(lname, spec.name, key, action, prm.shape, reason=reason, old_split=old_split,
                                 fill=fill_label(fill) if action == Action.PADDED else None, split_derived=derived,
                                 **base))

    def new_layer_row(self, lname: str, spec: Any, fill: Any, base: dict) -> PlanRow:
        if not is_preserving(fill):
            return PlanRow(lname, spec.name, None, Action.KEPT_INIT, reason="new layer", **base)
        from growstage.framework.adapters.deepen import new_layer_start, zeroed_params

        if "_ids" not in self.starts:
            self.starts["_ids"] = {id(self.targets[n].layer) for n in self.new_layers}
        if lname not in self.starts:
            self.starts[lname] = new_layer_start(self.targets, lname, self.new_layers, new_ids=self.starts["_ids"])
        action, reason = self.starts[lname]
        if action == Action.ZEROED and spec.name not in zeroed_params(self.targets[lname]):
            action = Action.KEPT_INIT
        return PlanRow(lname, spec.name, None, action, reason=reason, fill=fill_label(fill), **base)

    def post_ln_deepening(self) -> None:
        """New post-LN blocks after an old one start as the identity by taking over the old block's output
        norm (docs/DESIGN.md "keras_hub models"); rewrites the rows of those layers."""
        from growstage.framework.adapters.deepen import post_ln_chains

        for old, chain, prefix in post_ln_chains(self.targets, self.new_layers):
            if not all(is_preserving(self.opts.fill_for(n)) for n in chain):
                continue
            moved = {r.param: r for r in self.rows if r.layer == old and r.param.startswith(prefix + "/")}
            if not moved or any(r.action not in Action.writes() for r in moved.values()):
                continue  # the old norm is not carried over (only=, reset, custom): nothing to move
            last = chain[-1]
            why = (f"post-LN deepening: {old}'s output norm moves to {last}, {old}'s starts at (1, 0); new blocks "
                   f"{', '.join(chain)}: branches zeroed, norms (1, 0): identity up to eps/variance")
            for i, r in enumerate(self.rows):
                if r.layer == old and r.param in moved:
                    self.rows[i] = replace(r, action=Action.IDENTITY, source=None, reason=why)
                elif r.layer in chain:
                    spec = self.targets[r.layer].param(r.param)
                    if r.layer == last and r.param in moved:
                        self.rows[i] = replace(moved[r.param], layer=last, reason=why)
                    elif spec.branch:
                        self.rows[i] = replace(r, action=Action.ZEROED, reason=why)
                    else:
                        self.rows[i] = replace(r, action=Action.IDENTITY if spec.normalizes else r.action, reason=why)

    def unused_rows(self) -> None:
        """Source params nobody takes: ignored (listed), unused (ignore_unused) or a problem."""
        target_keys = [f"{l}/{p.name}" for l, i in self.targets.items() for p in i.params]
        for lname, params in self.src.layers.items():
            if not self.opts.ignore_unused and self.homeless_layer(lname, params):
                continue
            for pname, prm in params.items():
                key = f"{lname}/{pname}"
                if key in self.used:
                    continue
                if lname in self.ignored_layers or key in self.ignored_keys:
                    self.rows.append(PlanRow(None, pname, key, Action.IGNORED, prm.shape, reason="in ignore list"))
                elif self.only is not None and not self.only.intersection(self.rename.get(lname, (lname,))):
                    self.rows.append(PlanRow(None, pname, key, Action.IGNORED, prm.shape, reason="not in only="))
                elif self.opts.ignore_unused:
                    self.rows.append(PlanRow(None, pname, key, Action.UNUSED, prm.shape,
                                             reason="no target (ignore_unused)"))
                else:
                    self.problems.append(f"source param {key} has no home in the target"
                                         f"{did_you_mean(key, target_keys)}; list it in ignore=[...], pass "
                                         "ignore_unused=True, or rename= its layer")


    def homeless_layer(self, lname: str, params: dict) -> bool:
        """A whole source layer with no target layer of its name: one problem for the layer, not one per param."""
        if (lname in self.ignored_layers or self.only is not None
                or any(new in self.targets for new in self.rename.get(lname, (lname,)))
                or any(f"{lname}/{p}" in self.used for p in params)):
            return False
        self.problems.append(f"source layer {lname!r} ({len(params)} params) has no layer in the target"
                             f"{did_you_mean(lname, self.targets)}; load only some layers with only=[...], "
                             f"leave it out with ignore=[{lname!r}], pass ignore_unused=True, or rename= it")
        return True


def _grid(o_blocks: list[int], n_blocks: list[int]) -> list[tuple[int, int]]:
    """A grouped heads axis as the growths that matter: the KV heads and the heads per group."""
    real = [b for b in o_blocks if b]
    return [(len(real), len(n_blocks)), (real[0] if real else 0, n_blocks[0] if n_blocks else 0)]


def check_growth(lname: str, pname: str, fill: str, old_split, new_split, roles=None) -> list[str]:
    """Problems of a function-preserving fill on this growth (it copies old units; double needs x2)."""
    out = []
    roles = tuple(roles or ())
    for axis, (o_blocks, n_blocks) in enumerate(zip(old_split, new_split)):
        role = roles[axis] if axis < len(roles) else None
        if role == Role.ROPE_HEAD_DIM and sum(n_blocks) != sum(o_blocks):
            out.append(f"{lname}/{pname}: the head size changes ({sum(o_blocks)} -> {sum(n_blocks)}) under RoPE, "
                       "which changes every rotation frequency: no fill preserves that; keep the head size and "
                       "grow the number of heads (keras_hub's Llama: hidden size and query heads by one factor)")
            continue
        pairs = _grid(o_blocks, n_blocks) if role in GROUPED_ROLES else zip(o_blocks, n_blocks)
        for o, n in pairs:
            if n > o and o == 0:
                out.append(f"{lname}/{pname}: fill {fill_label(fill)!r} copies old units, but axis {axis} grows from 0")
            elif n > o and fill == Fill.DOUBLE and n != 2 * o:
                out.append(f"{lname}/{pname}: fill 'double' needs each grown block exactly doubled; axis {axis} has "
                           f"a block {o} -> {n}; use fill='net2net' or 'preserve' for other factors")
            elif n > o and fill in (Fill.CLONE, Fill.LEMON) and n % o:
                out.append(f"{lname}/{pname}: fill {fill_label(fill)!r} clones each unit n times, so a block must grow "
                           f"by a whole factor; axis {axis} has a block {o} -> {n}; use fill='net2net' for others")
    return out
