"""Stage-transition cost: growstage vs the naive Keras path, in one run.

BLSTM (input 40, softmax 1000):
  depth: 2 -> 3 layers at width 512
  width: 256 -> 512 at 4 layers
growstage: snapshot old -> build new with initializers deferred -> plan -> run the initializers
of what is not overwritten -> block-wise transfer (what growstage.rebuild and fit do).
naive Keras: build new -> get_weights/set_weights for each same-named layer whose shapes all match.
Also prints numpy memcpy bandwidth over the same bytes, the limit for the transfer step.

    python benchmarks/transition.py [--repeat 3] [--large] [--quick | --issue15]

Issue 15's cases (BLSTM and transformer width, 32 -> 33 layers) are in transition_cases.py.
"""
from __future__ import annotations

import argparse
import gc
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import growstage
from growstage.framework.variables import deferred_init
from transition_cases import set_same_named

L = keras.layers


def build(depth: int, width: int) -> keras.Model:
    x = keras.Input((None, 40), name="features")
    h = x
    for i in range(depth):
        h = L.Bidirectional(L.LSTM(width, return_sequences=True), name=f"blstm{i}")(h)
    return keras.Model(x, L.Dense(1000, activation="softmax", name="output")(h))


def n_params(m: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in m.weights))


def naive(old: keras.Model, depth: int, width: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    new = build(depth, width)
    t1 = time.perf_counter()
    set_same_named(old, new)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def grow(old: keras.Model, depth: int, width: int) -> dict[str, float]:
    t0 = time.perf_counter()
    snap = growstage.snapshot(old)
    t1 = time.perf_counter()
    with deferred_init() as pending:  # what growstage.rebuild and fit do
        new = build(depth, width)
    t2 = time.perf_counter()
    p = growstage.plan(snap, new, mode="subset", ignore_missing=True)
    p.pending = pending
    t3 = time.perf_counter()
    # run the initializers the transfer does not overwrite (the new layer's) apart, to time the copy alone
    pending.materialize_many([p.targets[r.layer].param(r.param).variable for r in p.rows
                              if r.action in ("kept-init", "padded") and r.layer is not None])
    t4 = time.perf_counter()
    rep = growstage.apply(p)
    t5 = time.perf_counter()
    return {"snapshot": t1 - t0, "build": t2 - t1, "plan": t3 - t2, "init": t4 - t3, "transfer": t5 - t4,
            "total": t5 - t0, "bytes": rep.bytes_written}


def memcpy_gbps(nbytes: int) -> float:
    src = np.ones(max(nbytes // 4, 1), dtype="f4")
    dst = np.empty_like(src)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return src.nbytes / best / 1e9


def returnn_row(old_shape, new_shape, repeat: int) -> dict | None:
    """RETURNN's transition for the same network, in its own process; None when returnn is not installed."""
    import json
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "returnn_transition.py")
    r = subprocess.run([sys.executable, script, "--old", str(old_shape[0]), "--new", str(new_shape[0]),
                        "--width", str(new_shape[1]), "--repeat", str(repeat)], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def case(name: str, old_shape, new_shape, repeat: int, with_returnn: bool = False) -> None:
    keras.utils.set_random_seed(0)
    old = build(*old_shape)
    rows_g, rows_n = [], []
    for _ in range(repeat):
        gc.collect()
        rows_g.append(grow(old, *new_shape))
        gc.collect()
        rows_n.append(naive(old, *new_shape))
    g = {k: min(r[k] for r in rows_g) for k in rows_g[0]}
    nb, ns = min(r[0] for r in rows_n), min(r[1] for r in rows_n)
    new_params = n_params(build(*new_shape))
    bw = memcpy_gbps(int(g["bytes"]))
    transfer_bw = g["bytes"] / g["transfer"] / 1e9
    print(f"\n== {name}: {n_params(old)/1e6:.1f}M -> {new_params/1e6:.1f}M params (best of {repeat})")
    print(f"growstage  snapshot {g['snapshot']:.3f}s  build {g['build']:.3f}s  plan {g['plan']:.3f}s  "
          f"init (not overwritten) {g['init']:.3f}s  transfer {g['transfer']:.3f}s  total {g['total']:.3f}s")
    print(f"naive      build {nb:.3f}s  set_weights {ns:.3f}s  total {nb + ns:.3f}s")
    print(f"ratio growstage/naive total: {g['total'] / (nb + ns):.2f}x; "
          f"growstage/building the new model from scratch: {g['total'] / nb:.2f}x")
    print(f"transfer moved {g['bytes']/1e6:.1f} MB at {transfer_bw:.2f} GB/s; numpy memcpy {bw:.2f} GB/s "
          f"({transfer_bw / bw:.0%} of memcpy)")
    if with_returnn:
        rt = returnn_row(old_shape, new_shape, repeat)
        if rt is None:
            print("RETURNN    skipped (the returnn package is not installed or its TF backend did not run)")
        else:
            print(f"RETURNN    build {rt['build']:.3f}s  initialize_params {rt['init']:.3f}s  "
                  f"set_params_by_serialized {rt['set']:.3f}s  total {rt['total']:.3f}s; "
                  f"ratio growstage/RETURNN {g['total'] / rt['total']:.2f}x")
    print("note: the naive path re-initialises every param whose shape changed; growstage carries them block-wise")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--large", action="store_true", help="also 6 -> 7 layers at width 1024 (~137M -> 160M params)")
    ap.add_argument("--quick", action="store_true", help="issue 15's cases at small sizes only (a smoke run)")
    ap.add_argument("--issue15", action="store_true", help="only issue 15's cases (transition_cases.py)")
    args = ap.parse_args()
    import transition_cases as tc  # issue 15: width with init-blocks, transformer width, 32 -> 33 layers

    if not (args.quick or args.issue15):
        case("depth 2 -> 3 at width 512", (2, 512), (3, 512), args.repeat, with_returnn=True)
        case("width 256 -> 512 at depth 4", (4, 256), (4, 512), args.repeat)
    tc.blstm_width(args.repeat, args.quick)
    tc.transformer_width(args.repeat, args.quick)
    tc.many_layers(args.repeat, args.quick)
    tc.fit_pause(args.repeat, args.quick)
    if args.large:
        case("depth 6 -> 7 at width 1024", (6, 1024), (7, 1024), args.repeat)


if __name__ == "__main__":
    main()
