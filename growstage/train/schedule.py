"""Growing schedules: which architecture trains in which epoch, with which options.

Pure Python: no framework, no arrays.  ``epoch -> stage`` is a pure function
of the schedule, which is what resuming relies on.  Epochs count from 0, as
in Keras' ``fit(initial_epoch=...)``.

Example::

    >>> s = Schedule(build=lambda stage: stage.spec, stages=[2, 3, 4], repetitions=[1, 2])
    >>> [s.stage_for_epoch(e).spec for e in range(7)]
    [2, 3, 3, 4, 4, 4, 4]
    >>> [st["from"] for st in layerwise(stack(["h1", "h2", "h3"]))[0].values() if "from" in st]
    [['data'], ['h1']]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from growstage.core.errors import GrowstageError, did_you_mean
from growstage.engine.options import TransferOptions
from growstage.train.layerwise import layerwise, stack  # noqa: F401  (their home before the split)
from growstage.train.epoch_values import wrapped_at
from growstage.train.pretrain_options import importer_mode, split_net_options

# the per-stage options a stage dict may give beside its "spec"
STAGE_KEYS = ("mode", "fill", "learning_rate", "frozen", "custom_param_importer", "repetitions",
              "lr_at_growth", "warmup_steps", "optimizer_state")
_GROWTH_KEYS = STAGE_KEYS[-3:]

Repetitions = int | Sequence[int] | Mapping[Any, int]
LR_AT_GROWTH = ("keep", "rewarm", "rewind")
OPTIMIZER_STATE = ("copy", "zero", "reset")


def check_growth_options(lr_at_growth: str, warmup_steps: int, optimizer_state: str, where: str = "stage") -> None:
    """Raise a :class:`GrowstageError` naming a bad growth option and the closest good one."""
    if lr_at_growth not in LR_AT_GROWTH:
        raise GrowstageError(f"{where}: unknown lr_at_growth {lr_at_growth!r}{did_you_mean(lr_at_growth, LR_AT_GROWTH)}"
                             f" (choose from {', '.join(LR_AT_GROWTH)})")
    if optimizer_state not in OPTIMIZER_STATE:
        raise GrowstageError(f"{where}: unknown optimizer_state {optimizer_state!r}"
                             f"{did_you_mean(optimizer_state, OPTIMIZER_STATE)} (choose from {', '.join(OPTIMIZER_STATE)})")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise GrowstageError(f"{where}: warmup_steps must be an int >= 0, not {warmup_steps!r}")
    if lr_at_growth == "rewarm" and warmup_steps == 0:
        raise GrowstageError(f"{where}: lr_at_growth='rewarm' needs warmup_steps > 0")


@dataclass
class Stage:
    """One architecture of a schedule and its per-stage options."""

    index: int
    spec: Any
    repetitions: int
    mode: str = "subset"
    fill: Any = "init"
    custom_param_importer: dict | None = None
    learning_rate: float | None = None
    frozen: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    # at the growth into this stage (see growstage.train.growth_lr)
    lr_at_growth: str = "keep"
    warmup_steps: int = 0
    optimizer_state: str = "copy"
    notes: list = field(default_factory=list)  # said in the report of the transition into this stage

    def transfer_options(self, **extra: Any) -> TransferOptions:
        """This stage's options for the transfer into its model (``extra``: what fit adds)."""
        try:
            return TransferOptions.from_kwargs(mode=self.mode, fill=self.fill,
                                               custom_param_importer=self.custom_param_importer or {},
                                               **{**self.options, **extra})
        except GrowstageError as e:
            raise GrowstageError(f"stage {self.index}: {e}") from None

    def spec_key(self) -> str:
        """A normalised form of the spec, to tell real architecture changes from equal specs."""
        try:
            return json.dumps(self.spec, sort_keys=True, default=repr)
        except (TypeError, ValueError):
            return repr(self.spec)


def _check_stage_keys(raw: Mapping, idx: int) -> None:
    known = ["spec", *STAGE_KEYS, *TransferOptions.names()]
    for key in raw:
        if key not in known and not (isinstance(key, str) and key.startswith("#")):
            raise GrowstageError(f"stage {idx}: unknown key {key!r}{did_you_mean(str(key), known)} "
                                 "(a stage dict holds 'spec' and per-stage options)")


def repetitions_for(reps: Repetitions, index: int, is_final: bool) -> int:
    """RETURNN's repetitions: an int; a list whose last value repeats; or a dict
    with ``default``, ``final`` and per-index entries.  As in RETURNN, a falsy value (0, None,
    ``[]``, ``{}``) means 1 epoch each; a bool is refused.

    >>> repetitions_for(0, 2, False), repetitions_for([3, 1], 0, False), repetitions_for({"final": 4}, 5, True)
    (1, 3, 4)
    """
    if isinstance(reps, bool):
        raise GrowstageError(f"repetitions is {reps!r}: RETURNN would train every stage 1 epoch (it reads {reps!r} as "
                             f"{'1' if reps else 'not given'}); give an int, a list or a dict")
    if not reps:
        n = 1  # RETURNN's Pretrain: `if not repetitions: repetitions = 1`
    elif isinstance(reps, int):
        n = reps
    elif isinstance(reps, Mapping):
        unknown = set(reps) - {"default", "final"} - {k for k in reps if isinstance(k, int)}
        if unknown:
            raise GrowstageError(f"repetitions: unknown keys {sorted(map(str, unknown))}; use 'default', 'final' or stage indices")
        if index in reps:
            n = reps[index]
        elif is_final and "final" in reps:
            n = reps["final"]
        else:
            n = reps.get("default", 1)
    else:
        reps = list(reps)
        if not reps:
            raise GrowstageError("repetitions: an empty list; give at least one number")
        n = reps[min(index, len(reps) - 1)]
    if not isinstance(n, int) or n < 0:
        raise GrowstageError(f"repetitions of stage {index} is {n!r}; expected an int >= 0")
    return n


def own_importers(spec: Any, extra: dict, options: Mapping[str, Any], idx: int) -> list[str]:
    """A network dict's layers' own ``custom_param_importer`` mode strings become that stage's
    ``modes`` (as RETURNN, where they override the copy mode), below the modes the stage or the
    schedule gives that layer; returns the notes of such overrides."""
    if not isinstance(spec, Mapping):
        return []
    own = {name: layer["custom_param_importer"] for name, layer in spec.items()
           if isinstance(layer, Mapping) and layer.get("custom_param_importer") is not None}
    if not own:
        return []
    own = {name: importer_mode(value, f"stage {idx}: layer {name!r}") for name, value in own.items()}
    given = dict(extra.get("modes", options.get("modes", {})))
    importers = extra.get("custom_param_importer") or {}
    notes = [f"stage {idx}: layer {name!r} gets mode {given[name]!r} over its own custom_param_importer {mode!r}"
             for name, mode in own.items() if given.get(name, mode) != mode and name not in importers]
    extra["modes"] = {**own, **given}
    return notes


class Schedule:
    """A growing schedule.

    ``build(stage) -> keras.Model`` builds a stage's architecture.  Stages come
    from a list (``stages``: specs, or dicts with a ``spec`` key and per-stage
    options) or from ``stage_fn(idx, prev_spec) -> spec | None``, called
    lazily one stage at a time; ``None`` ends the schedule.  The last stage
    trains for every epoch after the others.  Per-stage options default to
    the schedule-wide ``mode``, ``fill``, ``learning_rate``, ``frozen``, and
    what happens at the growth into a stage: ``lr_at_growth`` (``keep``,
    ``rewarm`` with ``warmup_steps``, ``rewind``) and ``optimizer_state``
    (``copy``, ``zero``, ``reset``), see :mod:`growstage.train.growth_lr`.  A
    stage dict without ``spec`` is all architecture, so an option name in it
    is an error.  RETURNN's ``#copy_param_mode``, ``#repetition`` and
    ``#config`` (learning rate) keys at the top of a network-dict spec are
    that stage's options, and a layer's own ``"custom_param_importer": "subset"`` there is that
    layer's mode (below ``modes`` the stage or schedule gives it; an unresolved ``WrapEpochValue``
    is refused: :func:`~growstage.returnn_pretrain` resolves it).  ``mode`` defaults to ``subset``; the stages of
    :func:`~growstage.returnn_pretrain` carry RETURNN's (``ifpossible``); a stage's
    own ``mode``, ``fill`` or ``repetitions`` that overrides one given here is noted in the report
    of the transition into that stage; ``repetitions`` given here when every stage carries its own
    (as :func:`~growstage.returnn_pretrain`'s do) would do nothing, and is an error.
    """

    def __init__(self, build: Callable[[Stage], Any], stages: Sequence[Any] | None = None, *,
                 stage_fn: Callable[[int, Any], Any] | None = None, repetitions: Repetitions | None = None,
                 mode: str | None = None, fill: Any = None, learning_rate: float | None = None,
                 frozen: Sequence[str] = (), max_stages: int = 10_000, **options: Any):
        if (stages is None) == (stage_fn is None):
            raise GrowstageError("Schedule needs exactly one of stages=[...] or stage_fn=f(idx, spec)")
        if stages is not None and not list(stages):
            raise GrowstageError("Schedule: stages is empty")
        self.build = build
        self._items = list(stages) if stages is not None else None
        self._fn = stage_fn
        self._cache: list[Stage] = []
        self._own_reps: set[int] = set()  # stages whose own repetitions replace the schedule's
        self._done = False
        self.repetitions = repetitions
        # given here and overridden by a stage's own value: the stage's transfer notes say so
        self._given = {k: v for k, v in (("mode", mode), ("fill", fill)) if v is not None}
        self.defaults = dict(mode="subset" if mode is None else mode, fill="init" if fill is None else fill,
                             learning_rate=learning_rate, frozen=tuple(frozen))
        self.defaults.update({k: options.pop(k) for k in _GROWTH_KEYS if k in options})
        self.options = options
        self.max_stages = max_stages
        self._check_now()

    def _check_now(self) -> None:
        """Every keyword and every listed stage checked at construction: a typo fails here, not at the
        first boundary minutes into training."""
        d = self.defaults
        check_growth_options(d.get("lr_at_growth", "keep"), d.get("warmup_steps", 0),
                             d.get("optimizer_state", "copy"), "Schedule")
        unknown = [k for k in self.options if k not in TransferOptions.names()]
        if unknown:
            raise GrowstageError(f"Schedule: unknown keyword {unknown[0]!r}"
                                 f"{did_you_mean(unknown[0], TransferOptions.names() + list(STAGE_KEYS))}")
        try:
            TransferOptions.from_kwargs(mode=d["mode"], fill=d["fill"], **self.options)
        except GrowstageError as e:
            raise GrowstageError(f"Schedule: {e}") from None
        if self._items is not None:
            for idx, raw in enumerate(self._items):
                if isinstance(raw, Mapping) and "spec" in raw:
                    _check_stage_keys(raw, idx)
            self.stage(len(self._items) - 1)  # makes (and so checks) every listed stage
            if self.repetitions is not None and len(self._own_reps) == len(self._items):
                raise GrowstageError(f"Schedule: repetitions={self.repetitions!r} is given but every stage carries its "
                                     "own (returnn_pretrain's stages always do), so it would be ignored; give "
                                     "returnn_pretrain(net, repetitions=...) or leave it out")

    def _raw(self, idx: int) -> Any:
        if self._items is not None:
            return self._items[idx] if idx < len(self._items) else None
        prev = self._cache[idx - 1].spec if idx > 0 else None
        return self._fn(idx, prev)

    def _make(self, idx: int, raw: Any, is_final: bool) -> Stage:
        opts = dict(self.defaults)
        spec, extra = raw, {}
        if isinstance(raw, Mapping) and "spec" in raw:
            extra = dict(raw)
            spec = extra.pop("spec")
        elif isinstance(raw, Mapping):
            clash = [k for k in raw if k in STAGE_KEYS or k in TransferOptions.names()]
            if clash:
                raise GrowstageError(
                    f"stage {idx}: {', '.join(map(repr, clash))} beside the architecture, but no 'spec' key: it would "
                    f"be read as part of the architecture; write {{'spec': <architecture>, {clash[0]!r}: ...}}")
        where = wrapped_at(spec) if isinstance(spec, Mapping) else None
        if where:
            raise GrowstageError(f"stage {idx}: {where} is a WrapEpochValue; only returnn_pretrain(net, ...) resolves "
                                 "it per epoch (as RETURNN's Pretrain does, epochs from 1); give the value itself here")
        if isinstance(spec, Mapping) and any(isinstance(k, str) and k.startswith("#") for k in spec):
            spec, hashed = split_net_options(spec, f"stage {idx}")  # RETURNN's '#copy_param_mode' & co.
            for key, value in hashed.items():
                if key in extra:
                    raise GrowstageError(f"stage {idx}: {key!r} is given twice, in the stage dict and as a "
                                         "'#' key of its network dict; keep one")
                extra[key] = value
        notes = own_importers(spec, extra, self.options, idx)
        for key in list(extra):
            if key in STAGE_KEYS:
                opts[key] = extra.pop(key)
                if key in self._given and opts[key] != self._given[key]:
                    notes.append(f"stage {idx}: its own {key} {opts[key]!r} overrides the schedule's "
                                 f"{key}={self._given[key]!r}")
        reps = opts.pop("repetitions", None)
        if reps is None:
            reps = repetitions_for(self.repetitions, idx, is_final)
        elif self.repetitions is not None:
            self._own_reps.add(idx)
            if reps != repetitions_for(self.repetitions, idx, is_final):
                notes.append(f"stage {idx}: its own repetitions {reps!r} override the schedule's "
                             f"repetitions={self.repetitions!r}")
        opts["frozen"] = tuple(opts.get("frozen") or ())
        stage = Stage(idx, spec, reps, options={**self.options, **extra}, notes=notes, **opts)
        check_growth_options(stage.lr_at_growth, stage.warmup_steps, stage.optimizer_state, f"stage {idx}")
        stage.transfer_options()  # a bad option fails when the stage is made, not at its boundary
        return stage

    def stage(self, idx: int) -> Stage | None:
        """Stage ``idx``, or None past the end.  Lazy: each stage is made once."""
        while len(self._cache) <= idx and not self._done:
            n = len(self._cache)
            if n >= self.max_stages:
                raise GrowstageError(f"the schedule produced {n} stages without ending; "
                                     "stage_fn must return None eventually (or raise max_stages)")
            raw = self._raw(n)
            if raw is None:
                self._done = True
                break
            nxt = self._raw(n + 1) if self._items is not None else None
            self._cache.append(self._make(n, raw, is_final=self._items is not None and nxt is None))
        return self._cache[idx] if idx < len(self._cache) else None

    def stage_for_epoch(self, epoch: int) -> Stage:
        """The stage that trains in ``epoch`` (0-based); the last stage continues forever."""
        if epoch < 0:
            raise GrowstageError(f"epoch {epoch} < 0")
        start, idx = 0, 0
        while True:
            st = self.stage(idx)
            nxt = self.stage(idx + 1)
            if nxt is None or epoch < start + st.repetitions:
                return st
            start += st.repetitions
            idx += 1
