"""Carrying out a plan: compute each layer's new values, write them, and undo
every write if anything fails, so a failed transfer leaves the target as it was.

Example::

    >>> import keras
    >>> def build(n):
    ...     x = keras.Input((3,))
    ...     return keras.Model(x, keras.layers.Dense(n, name="out")(x))
    >>> small, big = build(2), build(4)
    >>> report = transfer(small, big, mode="subset")
    >>> report.counts()
    {'padded': 2}
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NoReturn

import numpy as np

from growstage.framework.adapters.base import ParamSpec
from growstage.framework.adapters.graph import LayerInfo, layer_specs
from growstage.core.errors import GrowstageError, TransferError
from growstage.engine.planning import Plan, plan, plan_for
from growstage.engine.report import PlanRow, Report
from growstage.framework.adapters.deepen import start_values
from growstage.core.growth import for_row
from growstage.core.resize import resize
from growstage.core.init_blocks import grow_with_blocks
from growstage.framework.init_spec import init_spec
from growstage.framework.variables import UndoLog, read_variable
from growstage.framework.device_values import resize_device, resizes_on_device
from growstage.core.values import Param, as_snapshot
from growstage.core.vocab import Action, Fill, Mode
from growstage.engine.options import TransferOptions

WRITES = Action.writes()


@dataclass
class ImportContext:
    """What a custom importer gets besides the layer and the source values."""

    layer_name: str
    params: dict[str, ParamSpec]
    source: dict[str, Param]
    fill: Any
    undo: Any = None  # the transfer's undo log: a failing importer leaves nothing changed

    def resize(self, name: str, value: np.ndarray | None = None, *, source_name: str | None = None) -> np.ndarray:
        """The source param ``source_name`` (default ``name``) resized block-wise to target param ``name``."""
        spec = self.params[name]
        prm = self.source[source_name or name]
        old = prm.read() if value is None else np.asarray(value)
        return resize(old, spec.shape, old_split=prm.split if value is None else None, new_split=spec.split,
                      fill=_fill_value(self.fill, spec))

    def assign(self, name: str, value: np.ndarray) -> None:
        (self.undo or UndoLog()).write(self.params[name].variable, np.asarray(value), name)


def _fill_value(fill: Any, spec: ParamSpec, current: np.ndarray | None = None) -> Any:
    if fill == "init" or fill == Fill.INIT_BLOCKS:  # a custom importer's resize: the target's init
        return current if current is not None else read_variable(spec.variable)
    if fill == "zeros":
        return 0
    return fill


def target_itemsize(spec: ParamSpec) -> int:
    return np.dtype(spec.variable.dtype).itemsize


def _check_finite(p: Plan, row: PlanRow, old: np.ndarray, notes: list[str]) -> None:
    if old.dtype.kind != "f" and old.dtype.name != "bfloat16":
        return
    with np.errstate(all="ignore"):
        if np.isfinite(np.add.reduce(old, axis=None)):  # one pass, no allocation; a finite sum means no NaN/Inf
            return
    bad = old.size - int(np.count_nonzero(np.isfinite(old)))
    if bad:
        msg = f"{row.source}: {bad} non-finite source values (NaN/Inf)"
        if p.options.on_nonfinite == "error":
            raise GrowstageError(msg + " and on_nonfinite='error'")
        notes.append(msg)


def _reads_init(p: Plan, row: PlanRow) -> bool:
    """Whether a row needs the target's fresh init: kept, or padded with fill init/preserve.  For the
    others (copied, sliced, other fills) a variable still pending never runs its initializer."""
    if row.layer is None:
        return False
    if row.action == "kept-init" or row.layer in p.customs:
        return True
    fill = p.options.fill_for(row.layer)
    return row.action == Action.PADDED and isinstance(fill, str) and fill in (Fill.INIT, Fill.PRESERVE)


def init_needed(p: Plan) -> list[Any]:
    """The target variables whose initializer a plan's transfer runs (the rest are overwritten).

    Example::

        >>> import keras
        >>> def build(n):
        ...     x = keras.Input((3,))
        ...     return keras.Model(x, keras.layers.Dense(n, name="out")(x))
        >>> [v.path for v in init_needed(plan(build(2), build(4), mode="subset"))]
        ['out/kernel', 'out/bias']
    """
    return [p.targets[r.layer].param(r.param).variable for r in p.rows if _reads_init(p, r)]


def _new_value(p: Plan, row: PlanRow, spec: ParamSpec, undo: UndoLog, notes: list[str]) -> Any:
    prm = p.source.layers[row.source_layer][row.param]
    old = prm.read()
    _check_finite(p, row, old, notes)
    target_dtype = np.dtype(spec.variable.dtype)
    if row.action == "copied":
        tensor = getattr(prm.value, "tensor", None)
        if tensor is not None and old.dtype == target_dtype:
            return tensor  # a snapshot of a live model: the new variable shares the buffer, no copy
        new = old
    else:
        fill = p.options.fill_for(row.layer)
        if row.action == Action.PADDED and isinstance(fill, str) and fill == Fill.INIT_BLOCKS:
            new = _init_blocks_value(p, row, spec, old, undo, notes)
            return new.astype(target_dtype, copy=False) if new.dtype != target_dtype else new
        current = undo.current(spec.variable) if _reads_init(p, row) else np.zeros((), target_dtype)
        gm = for_row(row, spec.roles, fill, p.options.fill_seed, spec.size_power)
        tensor = getattr(prm.value, "tensor", None)
        if gm is None and tensor is not None and old.dtype == target_dtype and resizes_on_device():
            # a live model's snapshot: slice / pad on the source's device, no host round trip
            return resize_device(tensor, spec.shape, old_split=row.old_split, new_split=row.new_split,
                                 fill=_fill_value(fill, spec, current) if row.action == "padded" else 0)
        if gm is not None:
            new = gm.apply(old, fresh_value=current, noise=p.options.fill_noise, seed=p.options.fill_seed,
                           offset=spec.offset)
        else:
            # resize() copies the fill array, so ``current`` stays intact as the undo value.
            new = resize(old, spec.shape, old_split=row.old_split, new_split=row.new_split,
                         fill=_fill_value(fill, spec, current) if row.action == "padded" else 0)
    return new.astype(target_dtype, copy=False) if new.dtype != target_dtype else new


def _init_blocks_value(p: Plan, row: PlanRow, spec: ParamSpec, old: np.ndarray, undo: UndoLog,
                       notes: list[str]) -> np.ndarray:
    """A padded row under ``fill="init-blocks"``: only the new entries are drawn (see core/init_blocks)."""
    pending = undo.pending
    variable = spec.variable
    initializer = pending.initializer(variable) if pending is not None and pending.is_pending(variable) \
        else getattr(variable, "_initializer", None)
    ispec = init_spec(initializer)
    if ispec is None:
        # nothing to draw from (an initialised variable forgets its initializer, or a custom one):
        # the target's own init is what fill="init" would give, so use it
        notes.append(f"{row.target}: init-blocks fell back to init (initializer unknown or custom)")
        return resize(old, spec.shape, old_split=row.old_split, new_split=row.new_split,
                      fill=undo.current(variable))
    # a stable per-param seed: the same fill_seed gives the same draws in every run
    seed = (p.options.fill_seed * 1_000_003 + zlib.crc32(row.target.encode())) % 2**63
    notes.append(f"{row.target}: new entries drawn per block (init-blocks, {ispec.kind})")
    return grow_with_blocks(old, spec.shape, ispec, seed=seed, old_split=row.old_split, new_split=row.new_split)


def apply(p: Plan) -> Report:
    """Write the values a validated plan describes; all or nothing."""
    t0 = time.perf_counter()
    undo = UndoLog(p.pending)
    written = 0
    current = "?"
    notes: list[str] = []
    try:
        if p.pending is not None:
            # the initializers still needed run first (in threads), while the least memory is in use
            p.pending.materialize_many(init_needed(p))
        for lname, info in p.targets.items():
            current = lname
            if lname in p.customs:
                for spec in info.params:
                    undo.current(spec.variable)
                _run_custom(p, lname, info, undo)
                continue
            starts: dict[str, dict[str, np.ndarray]] = {}  # per start action (a block mixes zeroed and identity)
            for row in p.rows_for(lname):
                if row.action in WRITES:
                    spec = info.param(row.param)
                    new = _new_value(p, row, spec, undo, notes)
                    undo.write(spec.variable, new, row.target)
                    written += int(np.prod(new.shape)) * target_itemsize(spec)
                elif row.action in ("identity", "zeroed"):
                    if row.action not in starts:
                        starts[row.action] = start_values(info, row.action)
                    value = starts[row.action][row.param]
                    undo.write(info.param(row.param).variable, value, row.target)
                    written += value.nbytes
        undo.finish()
    except BaseException as e:
        undo.fail(e, f"transfer failed in layer {current!r}")
    return Report(list(p.rows), list(p.notes) + notes, time.perf_counter() - t0, written, plan=p)


def write_all(writes: Iterable[tuple[str, Any, Callable[[], np.ndarray]]]) -> int:
    """Assign ``load()`` to each ``(label, variable, load)``; all or nothing.  Returns bytes written."""
    undo = UndoLog()
    written = 0
    label = "?"
    try:
        for label, variable, load in writes:
            value = np.asarray(load())
            undo.write(variable, value, label)
            written += value.nbytes
    except BaseException as e:
        undo.fail(e, f"writing {label!r} failed")
    return written


def _run_custom(p: Plan, lname: str, info: LayerInfo, undo: UndoLog) -> None:
    rows = p.rows_for(lname)
    src_names = {r.source_layer for r in rows if r.source}
    src_layer = p.source.layers.get(next(iter(src_names)), {}) if src_names else p.source.layers.get(lname, {})
    ctx = ImportContext(lname, {s.name: s for s in info.params}, src_layer, p.options.fill_for(lname), undo)
    values = {name: prm.read() for name, prm in src_layer.items()}
    p.customs[lname](info.layer, values, context=ctx)


def transfer(source: Any, model: Any, options: TransferOptions | None = None, **kwargs: Any) -> Report:
    """Plan and apply: move ``source`` into ``model``.  Options as for :func:`growstage.plan`
    (keywords, or a :class:`~growstage.TransferOptions`); the default mode is ``exact``.

    The default ``mode`` is ``"exact"``: every shape must match, a changed shape is an
    error; pass ``mode="subset"`` to slice and pad block-wise (growing), ``"ifpossible"``
    or ``"reset"`` to keep the target's init where shapes differ.  ``only=[layer, ...]``
    loads only the named target layers.  ``source`` may be a snapshot, a model, a values
    dict, a checkpoint file or a ``fit`` checkpoint directory.

    Raises :class:`~growstage.PlanError` (nothing changed) when the plan is
    invalid and :class:`~growstage.TransferError` (everything restored) when
    writing fails.
    """
    return apply(plan(source, model, options, **kwargs))


def rebuild(build: Callable[[], Any], source: Any, options: TransferOptions | None = None, *,
            init_threads: int | None = None, **kwargs: Any) -> tuple[Any, Report]:
    """``build()`` a model without running the initializers the transfer overwrites, then move
    ``source`` into it: the fast stage transition.  Options as for :func:`growstage.plan`.

    The result equals building normally and calling :func:`transfer` (initializers draw
    from their own seeds); only the work differs.  ``init_threads``: threads for the
    initializers that still run (default: one per core; 1 for the lowest peak memory).

    Example::

        >>> import keras
        >>> def build(n):
        ...     x = keras.Input((3,))
        ...     return keras.Model(x, keras.layers.Dense(n, name="out")(x))
        >>> model, report = rebuild(lambda: build(4), build(2), mode="subset")
        >>> report.counts(), tuple(model.get_layer("out").kernel.shape)
        ({'padded': 2}, (3, 4))
    """
    from growstage.framework.variables import deferred_init

    opts = TransferOptions.from_kwargs(options, **kwargs)  # bad options fail before anything is built
    if not callable(build) or hasattr(build, "weights"):
        raise GrowstageError(f"rebuild takes a function that builds the new model, not a {type(build).__name__}: "
                             "pass e.g. lambda: build(8), or transfer(source, model) into a model you built")
    with deferred_init(init_threads) as pending:
        model = build()
    if not hasattr(model, "weights") or not hasattr(model, "layers"):
        pending.materialize_all()
        raise GrowstageError(f"rebuild: build() returned {type(model).__name__}, not a Keras model")
    try:
        p = plan(source, model, opts)
    except BaseException:
        pending.materialize_all()
        raise
    p.pending = pending
    return model, apply(p)


def set_param_values_by_dict(layer: Any, values: dict[str, Any], *, mode: str = Mode.EXACT,
                             fill: Any = Fill.INIT, ignore_missing: bool = False, ignore_unused: bool = False,
                             allow_cast: bool = False) -> Report:
    """Set one layer's params from ``{param_name: array}`` (RETURNN's method of the same name).

    Example::

        >>> import keras, numpy as np
        >>> d = keras.layers.Dense(3, name="d"); d.build((None, 2))
        >>> r = set_param_values_by_dict(d, {"kernel": np.ones((2, 2), "f4"), "bias": np.ones(2, "f4")},
        ...                              mode="subset", fill="zeros")
        >>> d.bias.numpy()
        array([1., 1., 0.], dtype=float32)
    """
    name = layer.name
    targets = {name: LayerInfo(name, layer, layer_specs(layer), type(layer).__name__)}
    src = as_snapshot({name: values})
    return apply(plan_for(src, targets, mode=mode, fill=fill, ignore_missing=ignore_missing,
                          ignore_unused=ignore_unused, allow_cast=allow_cast))


