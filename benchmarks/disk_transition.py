"""Disk-backed transition (issue 6, goal 4): peak RSS vs param bytes.

Snapshot the old model to growstage HDF5 one param at a time, release it,
build the new model with initializers deferred, and stream the params from the
file layer by layer into it.  Peak RSS (ru_maxrss) of that process is compared
with max(old, new) param bytes plus the baseline of a process that only
imports TensorFlow, Keras and growstage and builds nothing.

    python benchmarks/disk_transition.py [--width 1024 --old-depth 4 --new-depth 5] [--init-threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    import gc

    import keras

    import growstage

    if args.mode == "baseline":
        print(json.dumps({"peak_mb": peak_mb()}))
        return

    def build(depth: int) -> keras.Model:
        x = keras.Input((None, 40), name="features")
        h = x
        for i in range(depth):
            h = keras.layers.Bidirectional(keras.layers.LSTM(args.width, return_sequences=True), name=f"blstm{i}")(h)
        return keras.Model(x, keras.layers.Dense(1000, activation="softmax", name="output")(h))

    from growstage.framework.variables import deferred_init

    with deferred_init() as pending:  # the old model stands for a trained one: its values are not timed here
        old = build(args.old_depth)
    for v in old.weights:
        pending.set(v, __import__("numpy").full(tuple(v.shape), 0.01, v.dtype))
    old_bytes = sum(int(__import__("numpy").prod(v.shape)) * 4 for v in old.weights)
    path = os.path.join(args.dir, "old.h5")
    growstage.save(growstage.snapshot(old, lazy=True), path)
    del old, pending
    gc.collect()
    keras.backend.clear_session()
    new, report = growstage.rebuild(lambda: build(args.new_depth), path, mode="subset", allow_new_layers=True,
                                    init_threads=args.init_threads)
    new_bytes = sum(int(__import__("numpy").prod(v.shape)) * 4 for v in new.weights)
    print(json.dumps({"peak_mb": peak_mb(), "old_mb": old_bytes / 2**20, "new_mb": new_bytes / 2**20,
                      "copied": report.counts().get("copied", 0)}))


def run(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--width", str(args.width), "--old-depth", str(args.old_depth),
           "--new-depth", str(args.new_depth), "--dir", args.dir, "--init-threads", str(args.init_threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--old-depth", type=int, default=4)
    ap.add_argument("--new-depth", type=int, default=5)
    ap.add_argument("--child", choices=["baseline", "transition"], dest="mode")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--init-threads", type=int, default=1, help="threads for the new layer's initializers")
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    args.dir = args.dir or tempfile.mkdtemp()
    base = run("baseline", args)
    tr = run("transition", args)
    bound = 1.2 * max(tr["old_mb"], tr["new_mb"]) + base["peak_mb"]
    print(f"baseline (imports only) peak RSS {base['peak_mb']:.0f} MB")
    print(f"params: old {tr['old_mb']:.0f} MB, new {tr['new_mb']:.0f} MB")
    print(f"disk-backed transition peak RSS {tr['peak_mb']:.0f} MB; goal <= 1.2 x max + baseline = {bound:.0f} MB; "
          f"(peak - baseline) / max(old, new) = {(tr['peak_mb'] - base['peak_mb']) / max(tr['old_mb'], tr['new_mb']):.2f}")


if __name__ == "__main__":
    main()
