"""Preparing the next stage while the current one trains its last epoch: ``fit(prepare_ahead=True)``.

A background thread builds the next stage's model (initializers deferred), compiles it, plans
the transfer against the current model's names and shapes, and runs the initializers the
transfer will keep; at the boundary only the snapshot, the copy and the optimizer state remain.
The result is the synchronous path's, bit for bit, under the same ``seed``: the thread's
randomness is seeded as the boundary would seed it and handed back there
(:mod:`growstage.framework.background`).  That holds when the build function takes its
randomness from Keras (initializers, seed generators, unseeded ``keras.random``) or Python's
``random``, and calls ``keras.utils.set_random_seed`` if it likes; a build that draws from
numpy's, TensorFlow's or PyTorch's global generators would see other states: keep
``prepare_ahead=False`` there.
If preparing fails, the boundary prepares synchronously and says so.

Example::

    >>> import keras, numpy as np
    >>> from growstage.train.schedule import Schedule
    >>> from growstage.train.fitting import fit
    >>> def build(stage):
    ...     x = keras.Input((4,)); h = x
    ...     for i in range(stage.spec):
    ...         h = keras.layers.Dense(8, name=f"h{i}")(h)
    ...     return keras.Model(x, keras.layers.Dense(1, name="out")(h))
    >>> hist = fit(Schedule(build, stages=[1, 2]), np.ones((8, 4)), np.ones((8, 1)), epochs=2, seed=0,
    ...            log=None, prepare_ahead=True, compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
    >>> hist.transitions[0]["prepared_ahead"]
    True
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import keras

from growstage.engine.planning import plan
from growstage.engine.writing import init_needed
from growstage.framework.background import Background
from growstage.framework.capture import snapshot
from growstage.framework.optimizer import builds_from_shapes, ensure_built
from growstage.framework.variables import deferred_init
from growstage.core.errors import GrowstageError
from growstage.train.schedule import Schedule, Stage


def arch_key(model: Any) -> str:
    """The model's config with layer names replaced by positions: equal keys, equal architectures.

    Example::

        >>> import keras
        >>> def mlp(name):
        ...     x = keras.Input((2,))
        ...     return keras.Model(x, keras.layers.Dense(3, name=name)(x))
        >>> arch_key(mlp("a")) == arch_key(mlp("b"))
        True
    """
    names = {layer.name: f"#{i}" for i, layer in enumerate(model.layers)}

    def norm(obj):
        if isinstance(obj, dict):
            return {k: norm(v) for k, v in obj.items() if k not in ("name",)}
        if isinstance(obj, (list, tuple)):
            return [norm(v) for v in obj]
        if isinstance(obj, str):
            return names.get(obj, obj)
        return obj

    return json.dumps(norm(model.get_config()), sort_keys=True, default=repr)


def next_rebuild(schedule: Schedule, epoch: int, epochs: int, stage: Stage) -> Stage | None:
    """The stage of epoch ``epoch + 1`` when it has another architecture than ``stage``.

    Example::

        >>> sched = Schedule(lambda s: None, stages=[1, 1, 2])
        >>> [getattr(next_rebuild(sched, e, 4, sched.stage_for_epoch(e)), "index", None) for e in range(3)]
        [None, 2, None]
    """
    if epoch + 1 >= epochs:
        return None
    nxt = schedule.stage_for_epoch(epoch + 1)
    return nxt if nxt.index != stage.index and nxt.spec_key() != stage.spec_key() else None


@dataclass
class Prepared:
    """The next stage's model, compiled, with the initializers its transfer keeps already run."""

    model: Any  # None: the same architecture as the current model (no rebuild)
    pending: Any
    seconds: float


class Ahead:
    """The preparation of ``stage`` running in the background (see the module doc)."""

    waited = 0.0

    def __init__(self, run: Any, model: Any, stage: Stage) -> None:
        self.stage = stage
        old_key = arch_key(model)
        # names and shapes only: the values the transfer copies are read at the boundary
        try:
            source = snapshot(model, allow_auto_names=run.allow_auto_names, lazy=True)
        except GrowstageError:
            source = None  # (automatic names) the boundary raises it, after the epoch, as without
        seed = run.seed + stage.index if run.seed is not None else None
        self.job = Background(lambda: _prepare(run, old_key, source, stage), seed=seed, strategy=run.strategy)

    def take(self, run: Any) -> tuple[Prepared | None, str | None]:
        """At the boundary: the prepared model, or None and a note why the boundary prepares it.
        ``waited``: how long the boundary waited for the thread (the epoch was shorter than preparing)."""
        t0 = time.perf_counter()
        self.job.wait()
        self.waited = time.perf_counter() - t0
        if self.job.error is not None:
            e = self.job.error
            return None, (f"stage {self.stage.index}: preparing ahead failed ({type(e).__name__}: {e}); "
                          "prepared at the boundary instead")
        if run.seed is not None:
            keras.utils.set_random_seed(run.seed + self.stage.index)  # what the synchronous build does first
        self.job.adopt()
        return self.job.result(), None


def _prepare(run: Any, old_key: str, source: Any, stage: Stage) -> Prepared:
    t0 = time.perf_counter()
    pending = None
    try:
        with deferred_init() as pending:
            model = run.schedule.build(stage)
    except BaseException:
        if pending is not None:
            pending.materialize_all()  # layers the build made and kept (a cache) get their values
        raise
    if arch_key(model) == old_key:
        return Prepared(None, None, time.perf_counter() - t0)
    try:
        run.prepare(model, stage)
        if source is not None:
            try:
                p = plan(source, model, stage.transfer_options(allow_new_layers=True,
                                                               allow_auto_names=run.allow_auto_names))
            except GrowstageError:
                pass  # the boundary plans again with the trained values and raises it there
            else:
                pending.materialize_many(init_needed(p))
        if model.optimizer is not None and builds_from_shapes(model.optimizer):
            pending.placeholders()  # the optimizer's slots are made beside real variables
            ensure_built(model)
    except BaseException:
        pending.materialize_all()  # leave no variable without a value behind
        raise
    return Prepared(model, pending, time.perf_counter() - t0)
