"""Issue 15's transition cases, each in one interleaved run against naive Keras (build +
``set_weights`` of zero-padded arrays) and against building the new model from scratch.

  BLSTM width 256 -> 512 at 4 layers       (fill "init" and "init-blocks")
  pre-LN transformer width 512 -> 768       (fill "init" and "init-blocks")
  BLSTM 32 -> 33 layers at width 256        (per-variable overhead; vs one numpy read pass)

Run through ``benchmarks/transition.py`` (``--quick`` for small sizes).
"""
from __future__ import annotations

import gc
import time
from typing import Callable

import keras
import numpy as np

import growstage
from growstage.core.resize import resize

L = keras.layers


def blstm(depth: int, width: int, n_out: int = 1000) -> keras.Model:
    x = keras.Input((None, 40), name="features")
    h = x
    for i in range(depth):
        h = L.Bidirectional(L.LSTM(width, return_sequences=True), name=f"blstm{i}")(h)
    return keras.Model(x, L.Dense(n_out, activation="softmax", name="output")(h))


def transformer(width: int, depth: int = 4, heads: int = 8) -> keras.Model:
    """Pre-LN blocks: x + MHA(LN(x)), x + FF(LN(x)); heads fixed, the size per head grows."""
    x = keras.Input((None, 40), name="features")
    h = L.Dense(width, name="proj")(x)
    for i in range(depth):
        a = L.LayerNormalization(name=f"ln_att{i}")(h)
        a = L.MultiHeadAttention(heads, width // heads, name=f"att{i}")(a, a)
        h = L.Add(name=f"res_att{i}")([h, a])
        f = L.LayerNormalization(name=f"ln_ff{i}")(h)
        f = L.Dense(4 * width, activation="relu", name=f"ff_in{i}")(f)
        h = L.Add(name=f"res_ff{i}")([h, L.Dense(width, name=f"ff_out{i}")(f)])
    return keras.Model(x, L.Dense(1000, name="output")(L.LayerNormalization(name="ln_out")(h)))


def set_same_named(old: keras.Model, new: keras.Model, convert: Callable | None = None) -> None:
    """The naive Keras path: each layer of ``new`` takes its same-named layer's arrays from ``old``,
    through ``convert(arrays, layer)`` (None: only where the shapes already match)."""
    for layer in new.layers:
        try:
            src = old.get_layer(layer.name)
        except ValueError:
            continue
        w = src.get_weights()
        if convert is not None and w and len(w) == len(layer.weights):
            layer.set_weights(convert(w, layer))
        elif convert is None and [a.shape for a in w] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(w)


def naive_padded(old: keras.Model, build: Callable[[], keras.Model]) -> tuple[float, float]:
    """Build, then set_weights of each same-named layer's arrays zero-padded (corner-wise) to the new shapes."""
    t0 = time.perf_counter()
    new = build()
    t1 = time.perf_counter()
    set_same_named(old, new, lambda w, layer: [resize(a, tuple(v.shape), fill=0) for a, v in zip(w, layer.weights)])
    return t1 - t0, time.perf_counter() - t1


def read_pass(model: keras.Model) -> float:
    """One numpy read pass over the model's bytes (a sum over each variable's host array)."""
    arrays = [np.asarray(v.numpy()) for v in model.weights]
    t = time.perf_counter()
    for a in arrays:
        np.add.reduce(a, axis=None)
    return time.perf_counter() - t


def compare(name: str, old: keras.Model, build: Callable[[], keras.Model], repeat: int, fills: tuple[str, ...],
            **opts) -> dict[str, float]:
    """Interleave growstage.rebuild (per fill), naive Keras and a scratch build; print best-of ratios."""
    times: dict[str, list[float]] = {f"rebuild[{f}]": [] for f in fills}
    times.update(naive=[], scratch=[])
    transfer: list[float] = []
    for _ in range(repeat):
        for f in fills:
            gc.collect()
            t = time.perf_counter()
            _, rep = growstage.rebuild(build, old, mode="subset", fill=f, **opts)
            times[f"rebuild[{f}]"].append(time.perf_counter() - t)
            transfer.append(rep.seconds if hasattr(rep, "seconds") else float("nan"))
        gc.collect()
        nb, ns = naive_padded(old, build)
        times["naive"].append(nb + ns)
        gc.collect()
        t = time.perf_counter()
        build()
        times["scratch"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(f"\n== {name} (best of {repeat})")
    for f in fills:
        k = f"rebuild[{f}]"
        print(f"{k:24s} {best[k]:.3f}s  = {best[k] / best['naive']:.2f}x naive Keras, "
              f"{best[k] / best['scratch']:.2f}x scratch build")
    print(f"{'naive Keras':24s} {best['naive']:.3f}s   scratch build {best['scratch']:.3f}s")
    best["apply"] = min(transfer)
    return best


def blstm_width(repeat: int, quick: bool) -> None:
    d, w0, w1 = (2, 64, 128) if quick else (4, 256, 512)
    keras.utils.set_random_seed(0)
    compare(f"BLSTM width {w0} -> {w1} at {d} layers", blstm(d, w0), lambda: blstm(d, w1), repeat,
            ("init", "init-blocks"))


def transformer_width(repeat: int, quick: bool) -> None:
    w0, w1, d = (128, 192, 2) if quick else (512, 768, 4)
    keras.utils.set_random_seed(0)
    compare(f"pre-LN transformer width {w0} -> {w1} at {d} blocks", transformer(w0, d),
            lambda: transformer(w1, d), repeat, ("init", "init-blocks"))


def many_layers(repeat: int, quick: bool) -> None:
    d, w = (8, 64) if quick else (32, 256)
    keras.utils.set_random_seed(0)
    old = blstm(d, w)
    best = compare(f"BLSTM {d} -> {d + 1} layers at width {w}", old, lambda: blstm(d + 1, w), repeat, ("init",),
                   ignore_missing=True)
    rp = min(read_pass(old) for _ in range(3))
    print(f"transfer step (apply) {best['apply']:.3f}s vs one numpy read pass {rp:.3f}s "
          f"({best['apply'] / rp:.1f}x) over {len(old.weights)} variables")


def fit_pause(repeat: int, quick: bool) -> None:
    """The visible pause at a ``fit`` stage boundary (BLSTM 2 -> 3 layers): ``hist.transitions``'
    seconds (snapshot, build, plan, initializers not overwritten, copy, compile, optimizer state,
    collecting the old model), synchronous and with ``prepare_ahead=True``, interleaved.  The
    epoch before the boundary is long enough (about 3 s here) for the preparation to finish
    while it trains; its time shows what the thread costs on a CPU that also trains."""
    from growstage.train.fitting import fit
    from growstage.train.schedule import Schedule

    w, n = (64, 16) if quick else (512, 96)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 20, 40)).astype(np.float32)
    y = rng.normal(size=(n, 20, 1000)).astype(np.float32)
    sched = Schedule(lambda stage: blstm(stage.spec, w), stages=[2, 3], repetitions=[2, 1])
    rows: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for _ in range(repeat):
        for ahead in (False, True):
            gc.collect()
            hist = fit(sched, x, y, epochs=3, seed=0, log=None, batch_size=16, prepare_ahead=ahead,
                       compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
            t = hist.transitions[-1]
            assert t["prepared_ahead"] is ahead, t["report"].notes
            rows[ahead].append((t["seconds"], t["waited"], hist.epochs[1]["seconds"]))
    print(f"\n== fit boundary pause, BLSTM 2 -> 3 layers at width {w} (best of {repeat}, interleaved)")
    for ahead, label in ((False, "synchronous"), (True, "prepare_ahead=True")):
        pause, waited, epoch = (min(r[i] for r in rows[ahead]) for i in range(3))
        print(f"{label:20s} pause {pause:.3f}s (waited for the thread {waited:.3f}s); "
              f"the epoch before it {epoch:.2f}s")
