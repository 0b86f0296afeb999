"""RSS across 20 stage transitions in one process (issue 3): old models must be released.

A schedule alternating between 2 and 3 BLSTM layers (width 128), one short
epoch per stage, trained with growstage.fit; RSS is read after transitions
1, 10 and 20.

    python benchmarks/memory.py
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import growstage
from growstage.train.schedule import Schedule


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(stage):
    x = keras.Input((None, 20), name="feat")
    h = x
    for i in range(stage.spec):
        h = keras.layers.Bidirectional(keras.layers.LSTM(128, return_sequences=True), name=f"blstm{i}")(h)
    return keras.Model(x, keras.layers.Dense(10, name="out")(h))


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 10, 20)).astype("f4")
    y = rng.normal(size=(16, 10, 10)).astype("f4")
    sched = Schedule(build, stages=[2 + (i % 2) for i in range(21)], ignore_unused=True)  # 3 -> 2 drops a layer
    rss = {}

    def on_epoch_end(epoch, model, logs):
        if epoch in (1, 10, 20):
            rss[epoch] = rss_mb()

    hist = growstage.fit(sched, x, y, epochs=21, seed=0, batch_size=16, log=None, on_epoch_end=on_epoch_end,
                         compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
    print(f"transitions: {hist.rebuilds}")
    for e, v in sorted(rss.items()):
        print(f"RSS after transition {e:2d}: {v:8.1f} MB")
    print(f"growth from transition 10 to 20: {rss[20] - rss[10]:+.1f} MB")


if __name__ == "__main__":
    main()
