"""Issue 27 item 2: a growth boundary inside ``fit`` frees the old model itself, cheaply, on every backend.

The garbage collector's automatic runs are off while these fits run: only ``fit``'s own collections
free anything, so an old model (or a variable of it) that outlives its boundary stays alive and is seen.
"""
import gc
import os
import subprocess
import sys
import weakref

import keras
import numpy as np
import pytest

from growstage.train.fitting import fit
from growstage.train.schedule import Schedule

HERE = os.path.dirname(__file__)


def _build(stage):
    x = keras.Input((3,))
    h = x
    for i in range(stage.spec):
        h = keras.layers.Dense(4, activation="tanh", name=f"h{i}")(h)
    return keras.Model(x, keras.layers.Dense(1, name="out")(h))


def _compile(model, stage):
    model.compile(optimizer="adam", loss="mse")


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 3)).astype("f4"), rng.normal(size=(16, 1)).astype("f4")


class _Watch:
    """``on_epoch_end``: weak references to each stage's model and variables (weights, optimizer slots);
    at each epoch, the refs of earlier stages still alive."""

    def __init__(self):
        self.refs, self.alive = {}, []

    def __call__(self, epoch, model, logs):
        stage = len(model.layers)
        earlier = [r for s, rs in self.refs.items() if s != stage for r in rs]
        self.alive.append((epoch, sum(r() is not None for r in earlier)))
        if stage not in self.refs:
            # the values too: a snapshot, a plan or a report could hold them without their variables
            objs = [model] + list(model.weights) + [w.value for w in model.weights] + list(model.optimizer.variables)
            self.refs[stage] = [weakref.ref(o) for o in objs]


def _fit_without_automatic_gc(*args, **kwargs):
    gc.collect()
    gc.disable()
    try:
        return fit(*args, **kwargs)
    finally:
        gc.enable()


@pytest.mark.parametrize("prepare_ahead", [False, True])
def test_the_old_model_and_its_variables_are_garbage_after_each_boundary(prepare_ahead):
    x, y = _data()
    watch = _Watch()
    hist = _fit_without_automatic_gc(Schedule(_build, stages=[1, 2, 3]), x, y, epochs=3, seed=0, log=None,
                                     compile=_compile, batch_size=8, on_epoch_end=watch, prepare_ahead=prepare_ahead)
    assert hist.rebuilds == 2
    assert len(watch.refs) == 3 and all(len(r) > 5 for r in watch.refs.values())
    # (before issue 27, fit's own frame held the old model through its boundary's collection: all alive)
    assert watch.alive == [(0, 0), (1, 0), (2, 0)]


def test_a_resumed_model_is_garbage_after_its_boundary(tmp_path):
    x, y = _data()
    sched = Schedule(_build, stages=[1, 2], repetitions=[2])
    fit(sched, x, y, epochs=1, seed=0, log=None, compile=_compile, batch_size=8, checkpoint_dir=str(tmp_path))
    watch = _Watch()
    hist = _fit_without_automatic_gc(sched, x, y, epochs=3, seed=0, log=None, compile=_compile, batch_size=8,
                                     checkpoint_dir=str(tmp_path), resume=True, on_epoch_end=watch)
    assert hist.resumed_from is not None and hist.rebuilds == 1
    # (a model resumed before fit froze the heap was frozen with it: it outlived its stage)
    assert watch.alive == [(1, 0), (2, 0)]


@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="Keras imports TensorFlow with itself on that backend: it is in the heap fit freezes")
def test_the_first_boundary_of_a_process_walks_no_tensorflow():
    """A fresh process (the first boundary is the one that paid): ``fit(seed=...)`` seeds TensorFlow
    through Keras, which imports it; imported after fit froze the heap, its ~200,000 objects were walked
    by the first boundary's collection (1.3 s against 0.2 s for ``rebuild``)."""
    out = subprocess.run([sys.executable, os.path.join(HERE, "boundary_script.py")], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    walked, tf_modules = map(int, out.stdout.split()[-2:])
    assert tf_modules == 0, f"{tf_modules} TensorFlow modules were imported after the heap was frozen"
    assert walked < 100_000, f"the boundary's collection walks {walked} objects"
