"""Training a network that grows between epochs, Keras style.

At a stage boundary: snapshot -> rebuild (inside the active distribution
strategy) -> plan + transfer params -> compile -> transfer optimizer state ->
continue.  Rebuilds happen only when the architecture really changed.  After
each epoch a checkpoint goes to ``checkpoint_dir``; ``resume=True`` continues
from the latest complete one.

Example::

    >>> import keras, numpy as np
    >>> from growstage.train.schedule import Schedule
    >>> def build(stage):
    ...     x = keras.Input((4,)); h = x
    ...     for i in range(stage.spec):
    ...         h = keras.layers.Dense(8, activation="relu", name=f"h{i}")(h)
    ...     return keras.Model(x, keras.layers.Dense(1, name="out")(h))
    >>> sched = Schedule(build, stages=[1, 2])
    >>> hist = fit(sched, np.ones((8, 4)), np.ones((8, 1)), epochs=3, seed=0, log=None,
    ...            compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
    >>> [e["stage"] for e in hist.epochs], hist.rebuilds
    ([0, 1, 1], 1)
"""
from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import keras

from growstage.framework import rng
from growstage.framework.variables import deferred_init
from growstage.core.vocab import Mode
from growstage.engine.options import TransferOptions
from growstage.framework.optimizer import carry_over, optimizer_state, transfer_optimizer
from growstage.train.growth_lr import at_growth, lr_settings, restore_lr
from growstage.framework.traces import frozen_heap, has_registry, registry_mark, release_since
from growstage.train.checkpoints import latest_checkpoint, split_checkpoint, write_checkpoint
from growstage.core.errors import GrowstageError, UnknownNameError
from growstage.engine.planning import plan
from growstage.interop.preloading import preload
from growstage.train.ahead import Ahead, arch_key, next_rebuild
from growstage.train.fit_args import check_fit_kwargs
from growstage.train.identity import data_digest, differences, run_identity
from growstage.train.schedule import Schedule, Stage
from growstage.framework.capture import snapshot
from growstage.engine.report import Report
from growstage.engine.writing import apply


@dataclass
class GrowingHistory:
    """Per-epoch logs, the transitions with their reports (no ``plan``: it holds old values), the final model."""

    epochs: list[dict] = field(default_factory=list)
    transitions: list[dict] = field(default_factory=list)
    rebuilds: int = 0
    model: Any = None
    resumed_from: str | None = None


def _scope(strategy: Any):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()  # else: fit()'s caller's scope


class _Run:
    def __init__(self, schedule: Schedule, compile: Callable, seed: int | None, strategy: Any,
                 log: Callable | None, reset_optimizer: bool, allow_auto_names: bool):
        self.schedule, self.compile_fn, self.seed = schedule, compile, seed
        self.strategy, self.log = strategy, log
        self.reset_optimizer, self.allow_auto_names = reset_optimizer, allow_auto_names
        self.notes: list[str] = []  # of the transition under way

    def say(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)

    mark: frozenset = frozenset()
    release_traces: bool = True
    lr_shift: int = 0  # schedule step of the optimizer's iteration 0 (growth_lr)
    rng_state: dict | None = None  # the random states of the checkpoint resumed from

    def build_deferred(self, stage: Stage) -> tuple[Any, Any]:
        """The stage's model with its initializers waiting: the transfer that follows overwrites most."""
        with deferred_init() as pending:
            model = self.build(stage)
        return model, pending

    def build(self, stage: Stage) -> Any:
        if self.seed is not None:
            # Seeding per stage makes a new stage's fresh init independent of the
            # history before it, so a resumed run builds the same init.
            keras.utils.set_random_seed(self.seed + stage.index)
        with _scope(self.strategy):
            model = self.schedule.build(stage)
        return model

    def prepare(self, model: Any, stage: Stage) -> None:
        names = [layer.name for layer in model.layers]
        for name in stage.frozen:
            if name not in names:
                raise UnknownNameError("layer", name, names, hint=f"(frozen layers of stage {stage.index})")
            model.get_layer(name).trainable = False
        with _scope(self.strategy):
            self.compile_fn(model, stage)
            if stage.learning_rate is not None:
                model.optimizer.learning_rate = stage.learning_rate

    def transfer(self, source: Any, opt_state: dict | None, model: Any, stage: Stage, *, exact: bool,
                 pending: Any = None) -> Report:
        if exact:  # a resume: the checkpoint holds exactly this stage's params
            opts = TransferOptions(mode=Mode.EXACT, allow_auto_names=self.allow_auto_names)
        else:
            opts = stage.transfer_options(allow_new_layers=True, allow_auto_names=self.allow_auto_names)
        with _scope(self.strategy):
            try:
                p = plan(source, model, opts)
            except BaseException:
                if pending is not None:
                    pending.materialize_all()
                raise
            p.pending = pending
            report = apply(p)
            if opt_state is not None:
                grown = "copy" if exact else stage.optimizer_state
                transfer_optimizer(opt_state, model, report, reset=self.reset_optimizer or grown == "reset",
                                   new_entries="zero" if grown == "zero" else "copy")
                if not exact:
                    self.lr_shift = at_growth(model.optimizer, stage.lr_at_growth, warmup_steps=stage.warmup_steps,
                                              global_step=opt_state["iterations"] + self.lr_shift)
            elif not exact and (stage.lr_at_growth != "keep" or stage.optimizer_state != "copy"):
                report.notes.append(f"stage {stage.index}: lr_at_growth={stage.lr_at_growth!r} and optimizer_state="
                                    f"{stage.optimizer_state!r} had nothing to act on: the previous model had no "
                                    "optimizer state")
        return report

    data: str | None = None  # digest of x and y (train/identity.py)
    run_id: str | None = None

    def identity(self, stage_index: int) -> dict:
        return run_identity(self.schedule, self.seed, self.data, self.run_id, stage_index)

    def check_owner(self, checkpoint_dir: str, path: str, theirs: dict | None, stage_index: int) -> None:
        """Refuse to resume a run this one is not (before any file is written)."""
        if theirs is None:
            self.say(f"{path} does not say which run wrote it (an older growstage): resumed without checking")
            return
        diff = differences(self.identity(stage_index), theirs)
        if diff:
            raise GrowstageError(f"resume=True: {checkpoint_dir} holds another run's checkpoints ({'; '.join(diff)}); "
                                 "nothing was changed. Give this run its own checkpoint_dir, or resume with the "
                                 "seed, schedule and data (or run_id=) of the run that wrote it")

    def resume(self, checkpoint_dir: str, hist: "GrowingHistory") -> tuple[Any, Stage | None, int]:
        """The model of the latest verified checkpoint, its stage and the first epoch still to run."""
        found = latest_checkpoint(checkpoint_dir)
        if found is None:
            return None, None, 0
        path, snap = found
        for note in snap.notes:
            if note.startswith("skipped"):  # newer files that were damaged: say so, resume from this one
                self.say(note)
        with snap:
            done = int(snap.meta["epoch"])
            current = self.schedule.stage_for_epoch(done)
            self.check_owner(checkpoint_dir, path, snap.meta.get("run"), current.index)
            model, pending = self.build_deferred(current)
            self.prepare(model, current)
            params, opt_state = split_checkpoint(snap)
            self.transfer(params, opt_state, model, current, exact=True, pending=pending)
            self.lr_shift = restore_lr(model.optimizer, snap.meta.get("lr_growth"))
            self.rng_state = snap.meta.get("rng")
        hist.resumed_from = path
        hist.epochs = [dict(e) for e in snap.meta.get("history", [])]  # the epochs before the resume
        self.say(f"resumed from {path}: epochs 0..{done} done (stage {current.index}); next: epoch {done + 1}")
        return model, current, done + 1

    def first_model(self, stage: Stage, preload_from_files: dict | None) -> Any:
        model = self.build(stage)
        self.prepare(model, stage)
        self.say(f"stage {stage.index}: built {model.name} ({model.count_params()} params)")
        if preload_from_files:
            rep = preload(model, preload_from_files, training=True, resuming=False,
                          allow_auto_names=self.allow_auto_names)
            self.say(f"preloaded:\n{rep.table()}")
        return model


def fit(schedule: Schedule, x: Any = None, y: Any = None, *, epochs: int, compile: Callable[[Any, Stage], None],
        checkpoint_dir: str | None = None, keep: int = 3, resume: bool = False, seed: int | None = None,
        strategy: Any = None, reset_optimizer: bool = False, log: Callable[[str], None] | None = print,
        on_epoch_end: Callable[[int, Any, dict], None] | None = None, allow_auto_names: bool = False,
        preload_from_files: dict[str, dict] | None = None, release_traces: bool = True,
        prepare_ahead: bool = False, run_id: str | None = None, **fit_kwargs: Any) -> GrowingHistory:
    """Train ``schedule`` for ``epochs`` epochs on ``x``/``y`` (anything ``model.fit`` takes).

    ``compile(model, stage)`` compiles a freshly built model (with a new
    optimizer).  ``seed`` seeds each stage's build.  ``strategy``: a
    ``tf.distribute`` strategy to build and transfer in.  ``reset_optimizer``:
    start each stage with fresh optimizer state instead of transferring it.
    ``on_epoch_end(epoch, model, logs)`` runs after the epoch's checkpoint.
    ``preload_from_files``: RETURNN's option (see :func:`growstage.preload`);
    its ``init_for_train`` entries load into the first model of a run that
    starts from scratch, never into a resumed one.  ``release_traces``: at each
    rebuild, release what TensorFlow keeps of the old model's traced training
    step (see :mod:`growstage.framework.traces`); without it RSS grows by tens of
    MB per transition.
    ``checkpoint_dir``: after every epoch, weights, optimizer state, schedule position and
    the history so far go to ``checkpoint_dir/epoch-NNNN.h5`` (atomic; a model on a
    ``keras.distribution`` mesh, JAX: a sharded folder ``epoch-NNNN/``, each device writing its
    own shards, and a resume onto any mesh reads per device only its regions); ``keep``: how many
    of the newest files stay (default 3).  ``resume=True``: continue from the latest file
    in ``checkpoint_dir`` that verifies (a fresh start when there is none); the returned
    history then holds every epoch, those before the resume included.  Each checkpoint records the
    run that wrote it (stage specs, ``seed``, a digest of the data's shapes and first batch, or
    ``run_id``: give one when ``x`` is a dataset or generator); resuming from a folder another run
    wrote is a :class:`GrowstageError` naming the folder and what differs, and touches no file.
    Epochs count from 0 everywhere: ``epoch-0000.h5`` is the first epoch's file, the log
    says ``epoch 0``, ``on_epoch_end`` gets 0 and ``hist.epochs[0]["epoch"] == 0``.
    ``prepare_ahead=True``: build, compile and initialise the next stage's model in a background
    thread while the last epoch before a rebuild trains, so the boundary pauses only for the copy;
    bit-identical to the default under the same ``seed`` when the build takes its randomness from
    Keras (see :mod:`growstage.train.ahead`).  Off by default: on a CPU-only machine the thread
    competes with training for the same cores.
    Other keyword arguments go to ``model.fit`` (``batch_size``, ``shuffle``, ``validation_data``...).
    """
    check_fit_kwargs(fit_kwargs)
    fit_kwargs.setdefault("verbose", 0)
    run = _Run(schedule, compile, seed, strategy, log, reset_optimizer, allow_auto_names)
    run.release_traces, run.mark = release_traces, registry_mark()
    run.data, run.run_id = data_digest(x, y, fit_kwargs.get("batch_size")), run_id
    loop = _Loop(x, y, fit_kwargs, epochs, checkpoint_dir, keep, on_epoch_end, prepare_ahead, preload_from_files)
    hist = GrowingHistory()
    if seed is not None:
        keras.utils.set_random_seed(seed)  # which imports TensorFlow on any backend: not inside the frozen heap
    try:
        with frozen_heap():
            for epoch in range(_start(run, loop, hist, checkpoint_dir if resume else None), epochs):
                _epoch(run, loop, hist, epoch)
    finally:
        if loop.ahead is not None:
            loop.ahead.job.wait()  # no thread outlives fit, also when an epoch raised
    hist.model = loop.model
    return hist


def _start(run: _Run, loop: "_Loop", hist: GrowingHistory, checkpoint_dir: str | None) -> int:
    """The first epoch to run; a resumed run's model to ``loop`` (inside the frozen heap, or it outlives its stage)."""
    if not checkpoint_dir:
        return 0
    loop.model, loop.current, start = run.resume(checkpoint_dir, hist)
    if loop.model is not None:
        _settle(loop.model, loop)
        rng.restore(loop.model, run.rng_state)  # the shuffle order and dropout go on where the run stopped
    return start


def _settle(model: Any, loop: "_Loop") -> None:
    """A resumed model's first ``fit`` would first peek at a batch to build its loss and metrics, drawing
    one shuffle order more than the interrupted run drew: peek here, before the random states return."""
    kwargs = {k: v for k, v in loop.fit_kwargs.items() if k not in ("callbacks", "validation_data")}
    model.fit(loop.x, loop.y, epochs=0, **kwargs)


@dataclass
class _Loop:
    """What every epoch of :func:`fit` uses besides the run."""

    x: Any
    y: Any
    fit_kwargs: dict
    epochs: int
    checkpoint_dir: str | None
    keep: int
    on_epoch_end: Callable | None
    prepare_ahead: bool
    preload_from_files: dict | None
    ahead: Ahead | None = None  # the next stage's preparation under way
    model: Any = None  # held here only, so that a boundary can drop the old model's last reference
    current: Stage | None = None


def _epoch(run: _Run, loop: _Loop, hist: GrowingHistory, epoch: int) -> None:
    """One epoch of :func:`fit`: the transition before it, the next stage's preparation, the epoch."""
    stage = run.schedule.stage_for_epoch(epoch)
    if loop.model is None:
        loop.model, loop.current = run.first_model(stage, loop.preload_from_files), stage
    elif stage.index != loop.current.index:
        loop.model = _transition(run, hist, loop, stage, epoch)
        loop.current = stage
    model = loop.model
    if loop.prepare_ahead and loop.ahead is None:
        nxt = next_rebuild(run.schedule, epoch, loop.epochs, stage)
        loop.ahead = Ahead(run, model, nxt) if nxt is not None else None
    t0 = time.perf_counter()
    h = model.fit(loop.x, loop.y, epochs=epoch + 1, initial_epoch=epoch, **loop.fit_kwargs)
    logs = {k: float(v[-1]) for k, v in h.history.items()}
    hist.epochs.append({"epoch": epoch, "stage": stage.index, "seconds": time.perf_counter() - t0, **logs})
    # epochs count from 0 everywhere: file names, messages, callbacks, history, stage_for_epoch
    run.say(f"epoch {epoch} (of 0..{loop.epochs - 1}) stage {stage.index}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
    if loop.checkpoint_dir:
        write_checkpoint(loop.checkpoint_dir, model, epoch=epoch, stage=stage.index, keep=loop.keep,
                         allow_auto_names=run.allow_auto_names,
                         meta={"history": hist.epochs, "lr_growth": lr_settings(model.optimizer),
                               "run": run.identity(stage.index),
                               "rng": rng.capture(model)})  # the shuffle order and dropout go on from here
    if loop.on_epoch_end is not None:
        loop.on_epoch_end(epoch, model, logs)


def _next_model(run: _Run, model: Any, stage: Stage, ahead: Ahead | None) -> tuple[Any, Any, bool]:
    """The next stage's model (None: same architecture as ``model``), its pending initializers,
    and whether it was prepared ahead."""
    if ahead is not None:
        prepared, note = ahead.take(run)
        if prepared is not None:
            return prepared.model, prepared.pending, True
        run.say(note)
        run.notes.append(note)
    new, pending = run.build_deferred(stage)
    if arch_key(new) == arch_key(model):
        del new
        gc.collect()
        return None, None, False
    run.prepare(new, stage)
    return new, pending, False


def _kept(run: _Run, hist: GrowingHistory, model: Any, old: Stage, stage: Stage, epoch: int, t0: float,
          waited: float = 0.0, ahead_used: bool = False) -> Any:
    """A stage that keeps the model.  New frozen layers (or layers no longer frozen) or a new
    learning rate recompile it; the new optimizer continues the old one's state and, without a
    rate of its own, the learning-rate schedule of the growth before (a warm-up goes on)."""
    if stage.frozen != old.frozen or stage.learning_rate != old.learning_rate:
        for name in set(old.frozen) - set(stage.frozen):
            model.get_layer(name).trainable = True
        before = model.optimizer
        run.prepare(model, stage)
        if before is not None and model.optimizer is not None and not run.reset_optimizer:
            carry_over(before, model)
            if stage.learning_rate is None:
                run.lr_shift = restore_lr(model.optimizer, lr_settings(before))
    for note in run.notes:
        run.say(note)
    _record(hist, epoch, stage, t0, None, waited, ahead_used, notes=list(run.notes))
    return model


def _record(hist: GrowingHistory, epoch: int, stage: Stage, t0: float, report: Report | None,
            waited: float, ahead_used: bool, notes: list[str] | None = None) -> float:
    """One entry of ``hist.transitions``; returns its seconds (the pause)."""
    dt = time.perf_counter() - t0
    entry = {"epoch": epoch, "stage": stage.index, "rebuilt": report is not None, "report": report, "seconds": dt,
             "prepared_ahead": ahead_used, "waited": waited}
    if report is None:
        entry["notes"] = notes or []  # a kept model has no report to hold them
    hist.transitions.append(entry)
    return dt


def _transition(run: _Run, hist: GrowingHistory, loop: _Loop, stage: Stage, epoch: int) -> Any:
    """The model of ``stage`` from ``loop.model``; a rebuild frees the old model before it returns."""
    t0 = time.perf_counter()
    old, ahead, loop.ahead = loop.current, loop.ahead, None
    ahead = ahead if ahead is not None and ahead.stage.index == stage.index else None
    run.notes = list(stage.notes)
    if stage.spec_key() == old.spec_key():
        return _kept(run, hist, loop.model, old, stage, epoch, t0)
    new, pending, ahead_used = _next_model(run, loop.model, stage, ahead)
    waited = ahead.waited if ahead is not None else 0.0
    del ahead  # its lazy snapshot reads the old model's variables
    if new is None:
        run.say(f"stage {stage.index}: same architecture as stage {old.index}; no rebuild")
        return _kept(run, hist, loop.model, old, stage, epoch, t0, waited, ahead_used)
    model, loop.model = loop.model, None  # from here on the old model's last references outside its cycles
    snap = snapshot(model, allow_auto_names=run.allow_auto_names)
    opt_state = (optimizer_state(model, allow_auto_names=run.allow_auto_names, device=True)
                 if model.optimizer is not None else None)
    report = run.transfer(snap, opt_state, new, stage, exact=False, pending=pending)
    report.notes.extend(run.notes)
    report.plan = None  # kept in hist.transitions, it would keep every stage's values (its source) alive
    del model, snap, opt_state
    if run.release_traces and has_registry():
        # the old stage's traced steps, now unreachable but for TensorFlow's gradient registry (JAX and
        # PyTorch have none: a full collection there costs about as much as the rest of the boundary)
        gc.collect()
        release_since(run.mark)
        run.mark = registry_mark()
    gc.collect()
    hist.rebuilds += 1
    dt = _record(hist, epoch, stage, t0, report, waited, ahead_used)
    if run.log is not None:  # the table takes longer to render than the copy it describes
        run.say(f"stage {stage.index} from epoch {epoch}: rebuilt {new.name} ({new.count_params()} params) "
                f"in {dt:.2f}s{' (prepared ahead)' if ahead_used else ''}\n{report.table()}")
    return new
