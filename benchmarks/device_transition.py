"""Stage transitions on the device, per Keras backend: how far is growstage from building from scratch?

For each backend it can run (one subprocess each, KERAS_BACKEND set), two growths:
  BLSTM 6 -> 7 layers (input 40, Dense 1000 on top) and a pre-LN transformer 12 -> 24 blocks,
  at width 1024 (``--small``: 256, for a CPU), measuring (best of ``--repeat``):
  scratch   building the new model from scratch (initializers run),
  rebuild   growstage.rebuild(build_new, snapshot(old)): snapshot + deferred build + plan + transfer,
  transfer  growstage.transfer(snapshot, new) alone, into an already built model,
  floor     copying every old param on the device with the backend's own copy op,
with rebuild/scratch and transfer/floor ratios.  Mode subset with ignore_missing (new layers keep init).

    python benchmarks/device_transition.py [--small] [--repeat 3] [--backends tensorflow,jax,torch]

``--mesh 2x4`` (JAX only; forced host devices when there are not enough): the same growths laid out over a
keras.distribution ModelParallel mesh (kernels sharded on "model"), comparing
  scratch   building the new model sharded from scratch (Keras's jitted initializers, out_shardings),
  rebuild   growstage.rebuild on the mesh (every new value computed on the devices),
  via host  the same rebuild from a host copy of the old values (what a gather to the host costs),
with bytes per device: what the device holds of the new model (the least any transition writes) and
what the transition read into host memory (``jax_mesh.watch_host_reads``).

    python benchmarks/device_transition.py --mesh 2x4 --small
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

GROWTHS = {"blstm": ("BLSTM {a} -> {b} layers", 6, 7), "transformer": ("pre-LN transformer {a} -> {b} blocks", 12, 24)}


def build(kind: str, depth: int, width: int):
    import keras

    L = keras.layers
    if kind == "blstm":
        x = keras.Input((None, 40), name="features")
        h = x
        for i in range(depth):
            h = L.Bidirectional(L.LSTM(width, return_sequences=True), name=f"blstm{i}")(h)
        return keras.Model(x, L.Dense(1000, name="output")(h))
    x = keras.Input((None, width), name="tokens")
    h = x
    for i in range(depth):
        a = L.LayerNormalization(name=f"b{i}_ln1")(h)
        h = L.Add(name=f"b{i}_res1")([h, L.MultiHeadAttention(width // 64, 64, name=f"b{i}_att")(a, a)])
        f = L.Dense(4 * width, activation="gelu", name=f"b{i}_ff1")(L.LayerNormalization(name=f"b{i}_ln2")(h))
        h = L.Add(name=f"b{i}_res2")([h, L.Dense(width, name=f"b{i}_ff2")(f)])
    return keras.Model(x, L.LayerNormalization(name="final_ln")(h))


def sync(values) -> None:
    """Wait for the device: asynchronous backends return before the copy is done."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.block_until_ready(values)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    else:
        for v in values[-1:]:
            v.numpy() if hasattr(v, "numpy") and "CPU" in str(getattr(v, "device", "CPU")) else None


def device_copy(values):
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax.numpy as jnp

        return [jnp.copy(v) for v in values]
    if backend == "torch":
        return [v.clone() for v in values]
    import tensorflow as tf

    return [tf.raw_ops.DeepCopy(x=v) for v in values]


def best(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def worker(width: int, repeat: int) -> list[dict]:
    import gc

    import keras
    import numpy as np

    import growstage

    rows = []
    for kind, (label, a, b) in GROWTHS.items():
        keras.utils.set_random_seed(0)
        old = build(kind, a, width)
        snap = growstage.snapshot(old)
        opts = dict(mode="subset", ignore_missing=True)
        mb = lambda m: sum(int(np.prod(w.shape)) * 4 for w in m.weights) / 2**20  # noqa: E731
        scratch = best(lambda: sync([w.value for w in build(kind, b, width).weights]), repeat)
        gc.collect()
        rebuild = best(lambda: sync([w.value for w in growstage.rebuild(
            lambda: build(kind, b, width), growstage.snapshot(old), **opts)[0].weights]), repeat)
        gc.collect()
        new = build(kind, b, width)
        transfer = best(lambda: (growstage.transfer(snap, new, **opts), sync([w.value for w in new.weights])), repeat)
        olds = [w.value for w in old.weights]
        floor = best(lambda: sync(device_copy(olds)), max(repeat, 5))
        rows.append({"backend": keras.backend.backend(), "growth": f"{label.format(a=a, b=b)} @{width}",
                     "old_mb": mb(old), "new_mb": mb(new), "scratch": scratch, "rebuild": rebuild,
                     "transfer": transfer, "floor": floor, "device": str(getattr(olds[0], "device", "cpu"))})
        del old, new, snap
        gc.collect()
    return rows


def mesh_layout(shape):
    import jax
    from keras import distribution as kd

    mesh = kd.DeviceMesh(shape, ["batch", "model"], jax.devices()[: shape[0] * shape[1]])
    lm = kd.LayoutMap(mesh)
    # LayoutMap keys are regexes matched against whole variable paths (re.fullmatch)
    for key, axes in {r"blstm\d+/.*_lstm.*/lstm_cell/(recurrent_)?kernel": (None, "model"), r"output/kernel": ("model", None),
                      r".*_att/(query|key|value)/kernel": (None, "model", None),
                      r".*_att/attention_output/kernel": ("model", None, None),
                      r".*_ff1/kernel": (None, "model"), r".*_ff2/kernel": ("model", None)}.items():
        lm[key] = axes
    return kd.ModelParallel(layout_map=lm, batch_dim_name="batch")


def per_device_bytes(model) -> int:
    """The most bytes of the model's values any one device holds."""
    held: dict = {}
    for w in model.weights:
        for s in w.value.addressable_shards:
            held[s.device.id] = held.get(s.device.id, 0) + s.data.nbytes
    return max(held.values())


def mesh_worker(width: int, repeat: int, shape) -> list[dict]:
    import gc

    import keras
    from keras import distribution as kd

    import growstage
    from growstage.framework.backends.jax_mesh import watch_host_reads

    rows = []
    kd.set_distribution(mesh_layout(shape))
    for kind, (label, a, b) in GROWTHS.items():
        keras.utils.set_random_seed(0)
        old = build(kind, a, width)
        opts = dict(mode="subset", ignore_missing=True)
        scratch = best(lambda: sync([w.value for w in build(kind, b, width).weights]), repeat)
        gc.collect()
        rebuild = best(lambda: sync([w.value for w in growstage.rebuild(
            lambda: build(kind, b, width), growstage.snapshot(old), **opts)[0].weights]), repeat)
        with watch_host_reads() as reads:
            new = growstage.rebuild(lambda: build(kind, b, width), growstage.snapshot(old), **opts)[0]
            sync([w.value for w in new.weights])
        host_read = sum(int(np.prod(s)) * 4 for s, _ in reads)
        gc.collect()
        via_host = best(lambda: sync([w.value for w in growstage.rebuild(
            lambda: build(kind, b, width), growstage.snapshot(old).values_dict(), **opts)[0].weights]), repeat)
        rows.append({"growth": f"{label.format(a=a, b=b)} @{width}", "mesh": "x".join(map(str, shape)),
                     "scratch": scratch, "rebuild": rebuild, "via_host": via_host,
                     "device_mb": per_device_bytes(new) / 2**20, "host_read_mb": host_read / 2**20,
                     "model_mb": sum(int(np.prod(w.shape)) * 4 for w in old.weights) / 2**20})
        del old, new
        gc.collect()
    return rows


def mesh_main(args, width: int) -> None:
    shape = tuple(int(n) for n in args.mesh.split("x"))
    n = shape[0] * shape[1]
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mesh", args.mesh, "--repeat", str(args.repeat)]
    r = subprocess.run(cmd + (["--small"] if args.small else []), env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"the mesh worker failed:\n{r.stderr[-3000:]}")
    print("| growth | mesh | scratch build (sharded) | rebuild on the mesh (x scratch) | rebuild via a host copy "
          "| new model per device | read to host by the rebuild (old model) |")
    print("|---|---|---|---|---|---|---|")
    for row in json.loads(r.stdout.strip().splitlines()[-1]):
        print(f"| {row['growth']} | {row['mesh']} | {row['scratch']:.3f} s | {row['rebuild']:.3f} s "
              f"({row['rebuild'] / row['scratch']:.2f}x) | {row['via_host']:.3f} s | {row['device_mb']:.1f} MB "
              f"| {row['host_read_mb']:.1f} MB (of {row['model_mb']:.0f} MB) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="width 256 (for a CPU)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", default="tensorflow,jax,torch")
    ap.add_argument("--mesh", default=None, help="e.g. 2x4: the growths on a keras.distribution mesh (JAX)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    width = 256 if args.small else 1024
    if args.worker and args.mesh:
        print(json.dumps(mesh_worker(width, args.repeat, tuple(int(n) for n in args.mesh.split("x")))))
        return
    if args.mesh:
        mesh_main(args, width)
        return
    if args.worker:
        print(json.dumps(worker(width, args.repeat)))
        return
    print("| backend | growth | old -> new params | scratch build | rebuild (x scratch) | transfer | device copy floor (transfer / floor) |")
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--repeat", str(args.repeat)] + (["--small"] if args.small else [])
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"| {backend} | could not run: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode} |")
            continue
        for row in json.loads(r.stdout.strip().splitlines()[-1]):
            print(f"| {row['backend']} | {row['growth']} | {row['old_mb']:.0f} -> {row['new_mb']:.0f} MB "
                  f"| {row['scratch']:.3f} s | {row['rebuild']:.3f} s ({row['rebuild'] / row['scratch']:.1f}x) "
                  f"| {row['transfer']:.3f} s | {row['floor']:.4f} s ({row['transfer'] / row['floor']:.0f}x) |", flush=True)


if __name__ == "__main__":
    main()
