"""The growth boundary inside ``fit`` against ``growstage.rebuild`` of the same transition (issue 27).

A 2-layer LSTM (32 units) grows to 3 layers after one epoch.  Like with like: every measurement runs
in a fresh process (``--child``), interleaved: a ``fit`` process whose boundary pause is
``hist.transitions[0]["seconds"]``, then a ``rebuild`` process that trains the same 2-layer model for
the same epoch and times ``rebuild`` of the same transition (deferred init, transfer, the new model
compiled as fit compiles it), then ``transfer_optimizer`` (Adam's slots, which a fit boundary carries)
timed apart.  Each process does it twice: the first of a process pays what a process
does once (JAX's first compilations of the new shapes, lazily imported modules), the second does not.
The rebuild process then frees the old model as a hand-written loop would (``del old; gc.collect()``),
timed apart: a fit boundary frees it too (in a heap ``fit`` froze), ``rebuild`` alone does not.
The fit process then runs once more, untimed, with the garbage collector's automatic runs off, and
counts the old model's variables (weights and optimizer slots) still alive after the boundary: 0 when
the boundary freed them.
Prints the medians of each and their ratios.

    KERAS_BACKEND=jax python benchmarks/fit_boundary.py --repeats 5
    OMP_NUM_THREADS=1 KERAS_BACKEND=torch python benchmarks/fit_boundary.py --repeats 3

(one OpenMP thread: with PyTorch's default threads on a loaded machine, building a model spikes to
seconds now and then, on both sides).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import weakref

ROUNDS = 2  # per process: the first boundary of a process, then a later one


def build(stage):
    import keras

    x = keras.Input((None, 8))
    h = x
    for i in range(stage.spec):
        h = keras.layers.LSTM(32, return_sequences=True, name=f"lstm{i}")(h)
    return keras.Model(x, keras.layers.Dense(4, name="out")(h))


def _compile(m, s=None):
    m.compile(optimizer="adam", loss="mse")


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 10, 8)).astype("f4"), rng.normal(size=(32, 10, 4)).astype("f4")


def _fit_once(x, y, alive: list | None = None) -> float:
    """One fit run's boundary pause; with ``alive``, appends how many old variables outlived the boundary."""
    import growstage
    from growstage.train.schedule import Schedule

    refs = []

    def watch(epoch, model, logs):
        if epoch == 0:  # the old model's variables; after the boundary they should be gone
            refs.extend(weakref.ref(v) for v in list(model.weights) + list(model.optimizer.variables))
        else:
            alive.append(sum(r() is not None for r in refs))

    hist = growstage.fit(Schedule(build, stages=[2, 3], repetitions=[1]), x, y, epochs=2, seed=0, log=None,
                         compile=_compile, batch_size=8, on_epoch_end=None if alive is None else watch)
    return hist.transitions[0]["seconds"]


def child_fit() -> dict:
    x, y = _data()
    seconds = [_fit_once(x, y) for _ in range(ROUNDS)]
    alive: list[int] = []
    gc.disable()  # (untimed) only fit's own collections run: what they leave alive stays alive
    _fit_once(x, y, alive)
    gc.enable()
    return {"seconds": seconds, "alive": alive}


def child_rebuild() -> dict:
    import keras

    import growstage

    x, y = _data()
    keras.utils.set_random_seed(0)  # as fit(seed=0) does (it imports TensorFlow, as there)
    seconds, carrying, freeing = [], [], []
    for _ in range(ROUNDS):
        old = build(type("S", (), {"spec": 2})())
        _compile(old)
        old.fit(x, y, epochs=1, verbose=0, batch_size=8)
        t0 = time.perf_counter()
        new, report = growstage.rebuild(lambda: build(type("S", (), {"spec": 3})()), old, mode="subset",
                                        allow_new_layers=True)
        _compile(new)
        seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        growstage.transfer_optimizer(old, new, report)  # a fit boundary carries Adam's slots too
        carrying.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        del old  # what a hand-written loop does to free the old model, which a fit boundary does too
        gc.collect()
        freeing.append(time.perf_counter() - t0)
    return {"seconds": seconds, "carrying": carrying, "freeing": freeing}


def _run_child(kind: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind], capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if out.returncode != 0:
        raise SystemExit(f"the {kind} process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved process pairs (medians reported)")
    ap.add_argument("--child", choices=["fit", "rebuild"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_fit() if args.child == "fit" else child_rebuild()))
        return
    fits, rebuilds, carrying, freeing, alive = [], [], [], [], []
    for _ in range(args.repeats):
        f = _run_child("fit")
        fits.append(f["seconds"])
        alive.extend(f["alive"])
        r = _run_child("rebuild")
        rebuilds.append(r["seconds"])
        carrying.append(r["carrying"])
        freeing.append(r["freeing"])
    print(f"backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}, medians of {args.repeats} process pairs:")
    for i, what in enumerate(["first of a process", "later"]):
        f, r = statistics.median(v[i] for v in fits), statistics.median(v[i] for v in rebuilds)
        c = statistics.median(v[i] + w[i] for v, w in zip(rebuilds, carrying))
        d = statistics.median(v[i] for v in freeing)
        print(f"  {what}: fit boundary {f:.3f} s, rebuild {r:.3f} s, ratio {f / r:.1f}x "
              f"(fit {[round(v[i], 3) for v in fits]}, rebuild {[round(v[i], 3) for v in rebuilds]}); "
              f"rebuild + transfer_optimizer (what the boundary does) {c:.3f} s, ratio {f / c:.1f}x; "
              f"+ freeing the old model by hand (del, gc.collect()) {c + d:.3f} s, ratio {f / (c + d):.1f}x")
    print(f"  old model's variables alive after the boundary (automatic gc off): {alive}")


if __name__ == "__main__":
    main()
