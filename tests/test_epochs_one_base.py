"""Epochs count from 0 everywhere and a resumed run's history holds every epoch (issue 12, item 7)."""
import os

import keras
import numpy as np

from growstage import Schedule, fit


def _build(stage):
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(stage.spec, activation="tanh", name="h0")(x)
    return keras.Model(x, keras.layers.Dense(1, name="out")(h))


def _run(d, epochs, **kw):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("f4")
    said, seen = [], []
    hist = fit(Schedule(_build, stages=[3, 5]), x, x[:, :1], epochs=epochs, seed=0, log=said.append,
               checkpoint_dir=str(d), keep=10, compile=lambda m, s: m.compile(optimizer="sgd", loss="mse"),
               on_epoch_end=lambda e, m, logs: seen.append(e), **kw)
    return hist, said, seen


def test_file_names_messages_callbacks_and_history_share_one_base(tmp_path):
    hist, said, seen = _run(tmp_path, 3)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0000.h5", "epoch-0001.h5", "epoch-0002.h5"]
    assert seen == [0, 1, 2] == [e["epoch"] for e in hist.epochs]
    assert [m.split(" stage")[0] for m in said if m.startswith("epoch ")] == \
        ["epoch 0 (of 0..2)", "epoch 1 (of 0..2)", "epoch 2 (of 0..2)"]
    assert any(m.startswith("stage 1 from epoch 1:") for m in said)


def test_a_resumed_run_returns_the_history_of_every_epoch(tmp_path):
    first, _, _ = _run(tmp_path, 2)
    hist, said, seen = _run(tmp_path, 4, resume=True)
    assert seen == [2, 3]
    assert [e["epoch"] for e in hist.epochs] == [0, 1, 2, 3]
    assert hist.epochs[:2] == first.epochs
    assert any("epochs 0..1 done" in m and "next: epoch 2" in m for m in said)
