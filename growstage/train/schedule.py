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

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from growstage.core.errors import GrowstageError
from growstage.engine.options import TransferOptions

Repetitions = int | Sequence[int] | Mapping[Any, int]


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


def repetitions_for(reps: Repetitions, index: int, is_final: bool) -> int:
    """RETURNN's repetitions: an int; a list whose last value repeats; or a dict
    with ``default``, ``final`` and per-index entries."""
    if isinstance(reps, int):
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


class Schedule:
    """A growing schedule.

    ``build(stage) -> keras.Model`` builds a stage's architecture.  Stages come
    from a list (``stages``: specs, or dicts with a ``spec`` key and per-stage
    options) or from ``stage_fn(idx, prev_spec) -> spec | None``, called
    lazily one stage at a time; ``None`` ends the schedule.  The last stage
    trains for every epoch after the others.  Per-stage options default to
    the schedule-wide ``mode``, ``fill``, ``learning_rate``, ``frozen``.
    """

    def __init__(self, build: Callable[[Stage], Any], stages: Sequence[Any] | None = None, *,
                 stage_fn: Callable[[int, Any], Any] | None = None, repetitions: Repetitions = 1,
                 mode: str = "subset", fill: Any = "init", learning_rate: float | None = None,
                 frozen: Sequence[str] = (), max_stages: int = 10_000, **options: Any):
        if (stages is None) == (stage_fn is None):
            raise GrowstageError("Schedule needs exactly one of stages=[...] or stage_fn=f(idx, spec)")
        if stages is not None and not list(stages):
            raise GrowstageError("Schedule: stages is empty")
        self.build = build
        self._items = list(stages) if stages is not None else None
        self._fn = stage_fn
        self._cache: list[Stage] = []
        self._done = False
        self.repetitions = repetitions
        self.defaults = dict(mode=mode, fill=fill, learning_rate=learning_rate, frozen=tuple(frozen))
        self.options = options
        self.max_stages = max_stages

    def _raw(self, idx: int) -> Any:
        if self._items is not None:
            return self._items[idx] if idx < len(self._items) else None
        prev = self._cache[idx - 1].spec if idx > 0 else None
        return self._fn(idx, prev)

    def _make(self, idx: int, raw: Any, is_final: bool) -> Stage:
        opts = dict(self.defaults)
        spec = raw
        if isinstance(raw, Mapping) and "spec" in raw:
            extra = dict(raw)
            spec = extra.pop("spec")
            for key in list(extra):
                if key in ("mode", "fill", "learning_rate", "frozen", "custom_param_importer", "repetitions"):
                    opts[key] = extra.pop(key)
            opts.setdefault("options", {}).update(extra)
        reps = opts.pop("repetitions", None)
        if reps is None:
            reps = repetitions_for(self.repetitions, idx, is_final)
        opts["frozen"] = tuple(opts.get("frozen") or ())
        options = {**self.options, **opts.pop("options", {})}
        stage = Stage(idx, spec, reps, options=options, **opts)
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


def stack(hidden: Sequence[str], output: str = "output", input: str = "data") -> dict[str, dict]:
    """A network dict of a plain stack: ``input -> hidden[0] -> ... -> output``."""
    net: dict[str, dict] = {}
    prev = input
    for name in hidden:
        net[name] = {"from": [prev]}
        prev = name
    net[output] = {"from": [prev]}
    return net


def _rewire(full: dict, keep: set[str], input: str) -> dict:
    """Copy ``full`` restricted to ``keep``; a removed source is replaced by its nearest kept ancestors."""
    def resolve(src: str, seen: frozenset) -> list[str]:
        if src == input or src in keep:
            return [src]
        if src in seen or src not in full:
            return []
        out: list[str] = []
        for s in full[src].get("from", [input]):
            out += [x for x in resolve(s, seen | {src}) if x not in out]
        return out

    net = {}
    for name in full:
        if name not in keep:
            continue
        layer = copy.deepcopy(full[name])
        sources: list[str] = []
        for s in full[name].get("from", [input]):
            sources += [x for x in resolve(s, frozenset()) if x not in sources]
        if input in sources and len(sources) > 1:
            sources.remove(input)  # as RETURNN: a layer that reads kept layers stops reading the input
        layer["from"] = sources
        net[name] = layer
    return net


def layerwise(net: Mapping[str, Mapping], *, method: str = "from_output", output: str = "output",
              input: str = "data", start: int = 1) -> list[dict]:
    """RETURNN's layer-wise construction: the list of network dicts, smallest first.

    ``from_output`` (default): repeatedly remove the layers feeding the output
    (re-wiring it to their sources) while it still reads a hidden layer; the
    stages are those networks, smallest first, then the full one.
    ``from_input``: stage n keeps the hidden layers within n steps of the input
    (longest path), plus the output.  ``start``: the first stage has at least
    this many hidden layers.
    """
    full = {k: dict(v) for k, v in net.items()}
    if output not in full:
        raise GrowstageError(f"layerwise: no output layer {output!r} in the network dict")
    hidden = [k for k in full if k != output]
    for name, layer in full.items():
        for s in layer.get("from", [input]):
            if s != input and s not in full:
                raise GrowstageError(f"layerwise: layer {name!r} reads unknown layer {s!r}")
    stages: list[dict] = []
    if method == "from_input":
        depth: dict[str, int] = {input: 0}

        def d(name: str) -> int:
            if name not in depth:
                depth[name] = 1 + max(d(s) for s in full[name].get("from", [input]))
            return depth[name]

        for n in range(1, max((d(h) for h in hidden), default=0) + 1):
            stages.append(_rewire(full, {h for h in hidden if d(h) <= n} | {output}, input))
    elif method == "from_output":
        keep = set(full)
        chain = [_rewire(full, keep, input)]
        while True:
            cur = chain[-1]
            direct = [s for s in cur[output]["from"] if s != input]
            nxt_keep = keep - set(direct)
            if not direct or not (nxt_keep - {output}):
                break
            keep = nxt_keep
            chain.append(_rewire(full, keep, input))
        stages = chain[::-1]
    else:
        raise GrowstageError(f"layerwise: unknown method {method!r}; use 'from_output' or 'from_input'")
    if not stages or stages[-1] != _rewire(full, set(full), input):
        stages.append(_rewire(full, set(full), input))
    while len(stages) > 1 and len(stages[0]) - 1 < start:
        stages.pop(0)
    return stages
