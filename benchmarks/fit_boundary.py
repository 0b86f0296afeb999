"""The growth boundary inside ``fit`` against ``growstage.rebuild`` of the same transition (issue 27).

A 2-layer LSTM (32 units) grows to 3 layers after one epoch.  Per repeat, interleaved: a ``fit`` run whose
boundary pause is ``hist.transitions[0]["seconds"]``, and ``rebuild`` of the same transition from the
same trained model (deferred init, transfer, the new model compiled as fit compiles it).  Prints the
median of each and their ratio.

    KERAS_BACKEND=jax python benchmarks/fit_boundary.py --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np

import growstage
from growstage.train.schedule import Schedule


def build(stage):
    x = keras.Input((None, 8))
    h = x
    for i in range(stage.spec):
        h = keras.layers.LSTM(32, return_sequences=True, name=f"lstm{i}")(h)
    return keras.Model(x, keras.layers.Dense(4, name="out")(h))


def _compile(m, s=None):
    m.compile(optimizer="adam", loss="mse")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median reported)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 10, 8)).astype("f4"), rng.normal(size=(32, 10, 4)).astype("f4")
    fits, rebuilds = [], []
    for _ in range(args.repeats):
        hist = growstage.fit(Schedule(build, stages=[2, 3], repetitions=[1]), x, y, epochs=2, seed=0, log=None,
                             compile=_compile, batch_size=8)
        fits.append(hist.transitions[0]["seconds"])
        old = build(type("S", (), {"spec": 2})())
        _compile(old)
        old.fit(x, y, epochs=1, verbose=0, batch_size=8)
        t0 = time.perf_counter()
        new, _ = growstage.rebuild(lambda: build(type("S", (), {"spec": 3})()), old, mode="subset",
                                   allow_new_layers=True)
        _compile(new)
        rebuilds.append(time.perf_counter() - t0)
    f, r = statistics.median(fits), statistics.median(rebuilds)
    print(f"backend {keras.backend.backend()}: fit boundary {f:.3f} s, rebuild {r:.3f} s, ratio {f / r:.1f}x "
          f"(medians of {args.repeats}; fit {[round(v, 3) for v in fits]}, rebuild {[round(v, 3) for v in rebuilds]})")


if __name__ == "__main__":
    main()
