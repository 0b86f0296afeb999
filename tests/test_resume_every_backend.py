"""Resume is bit-identical on every backend (issue 27, item 1): with shuffle=True and dropout, a run
stopped after an epoch and resumed ends with the same weights as an uninterrupted run; the shuffle
order and every random state a backend uses (numpy, Python's random, torch's generator, Keras seed
generators: JAX's keys) are saved with each checkpoint and restored."""
import random

import keras
import numpy as np

import growstage
from growstage.train.schedule import Schedule


def _build(stage):
    x = keras.Input((5,))
    h = keras.layers.Dense(stage.spec, activation="relu", name="h")(x)
    h = keras.layers.Dropout(0.3, name="drop")(h)  # a Keras seed generator inside the model
    return keras.Model(x, keras.layers.Dense(1, name="out")(h))


def _fit(ckpt, epochs, resume=False):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 5)).astype("f4"), rng.normal(size=(48, 1)).astype("f4")
    sched = Schedule(_build, stages=[4, 6], repetitions=[2])
    return growstage.fit(sched, x, y, epochs=epochs, seed=1, log=None, checkpoint_dir=str(ckpt), resume=resume,
                         compile=lambda m, s: m.compile(optimizer="adam", loss="mse"), batch_size=8, shuffle=True)


def _weights(model):
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


def test_resume_with_shuffle_and_dropout_is_bit_identical(tmp_path):
    full = _weights(_fit(tmp_path / "a", 4).model)
    # stopped after epoch 2 (in stage 1), and after epoch 1 (the last of stage 0: the resumed run grows first)
    _fit(tmp_path / "b", 3)
    _fit(tmp_path / "c", 2)
    for d, stopped in ((tmp_path / "b", 2), (tmp_path / "c", 1)):
        _check_resume(d, stopped, full)


def _check_resume(d, stopped, full):
    # whatever ran in between must not matter: the random states come from the checkpoint
    np.random.seed(123), random.seed(123), keras.utils.set_random_seed(99)
    resumed = _fit(d, 4, resume=True)
    assert resumed.resumed_from.endswith(f"epoch-000{stopped}.h5")
    got = _weights(resumed.model)
    assert sorted(got) == sorted(full)
    for k in full:
        assert np.array_equal(full[k], got[k]), k
