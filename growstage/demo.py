"""Demo: layer-wise growing pretraining of a BLSTM tagger on built-in synthetic data.

Three stages built by RETURNN's ``from_output`` construction (1, 2, then 3
BLSTM layers, the last stage also wider), two epochs each.  Prints every
transition's transfer report and the loss per epoch, and writes a PNG of the
training and validation loss with each stage labelled (epochs count from 0).
Files go to a new temporary folder unless ``--out DIR`` names one.

    python -m growstage.demo [--out DIR] [--epochs-per-stage 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import growstage
from growstage.train.schedule import Schedule, layerwise, stack

L = keras.layers
N_FEAT, N_CLASSES, T = 8, 4, 24


def synthetic_data(n: int = 768, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frame labels that depend on past and future frames, so depth and both directions help."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, N_FEAT)).astype("f4")
    past = np.cumsum(x[:, :, 0], axis=1)
    future = np.cumsum(x[:, ::-1, 1], axis=1)[:, ::-1]
    y = (past > 0).astype("i4") * 2 + (future > 0).astype("i4")
    return x, y


def build(stage) -> keras.Model:
    net, width = stage.spec["net"], stage.spec["width"]
    x = keras.Input((None, N_FEAT), name="features")
    outs = {"data": x}
    for name, layer in net.items():
        srcs = [outs[s] for s in layer["from"]]
        h = srcs[0] if len(srcs) == 1 else L.Concatenate(name=f"{name}_in")(srcs)
        if name == "output":
            outs[name] = L.Dense(N_CLASSES, activation="softmax", name="output")(h)
        else:
            outs[name] = L.Bidirectional(L.LSTM(width, return_sequences=True), name=name)(h)
    return keras.Model(x, outs["output"], name=f"blstm_x{len(net) - 1}_w{width}")


WIDTHS = (16, 16, 24)


def make_schedule(epochs_per_stage: int) -> Schedule:
    nets = layerwise(stack(["blstm1", "blstm2", "blstm3"]), method="from_output")
    return Schedule(build, stages=[{"net": n, "width": w} for n, w in zip(nets, WIDTHS)],
                    repetitions=epochs_per_stage, mode="subset", fill="init")


def stage_label(index: int) -> str:
    """What stage ``index`` of the demo is: its BLSTM depth and width."""
    return f"stage {index}: {index + 1} BLSTM x {WIDTHS[index]}"


def plot(history, path: str) -> str | None:
    """Training and validation loss per epoch, each stage's span shaded and labelled."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = figure(history, plt)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figure(history: Any, plt: Any) -> Any:
    """The loss figure of :func:`plot` (a matplotlib ``Figure``)."""
    epochs = [e["epoch"] for e in history.epochs]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(epochs, [e["loss"] for e in history.epochs], marker="o", label="training loss")
    if all("val_loss" in e for e in history.epochs):
        ax.plot(epochs, [e["val_loss"] for e in history.epochs], marker="s", label="validation loss")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.15 * (hi - lo))  # room for the stage labels above the curves
    for i, stage in enumerate(sorted({e["stage"] for e in history.epochs})):
        span = [e["epoch"] for e in history.epochs if e["stage"] == stage]
        ax.axvspan(min(span) - 0.5, max(span) + 0.5, color=f"C{i}", alpha=0.08)
        ax.text(min(span) - 0.45, 0.98, stage_label(stage), transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    ax.set_xticks(epochs)
    ax.set_xlabel("epoch (from 0)")
    ax.set_ylabel("loss")
    ax.set_title("growstage: layer-wise growing BLSTM")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="growstage demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, metavar="DIR",
                    help="folder for checkpoints and loss.png (default: a new temporary folder)")
    ap.add_argument("--epochs-per-stage", type=int, default=2, metavar="N", help="epochs each stage trains (default 2)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="growstage-demo-")
    t0 = time.perf_counter()
    x, y = synthetic_data()
    x_val, y_val = synthetic_data(192, seed=1)
    sched = make_schedule(args.epochs_per_stage)
    hist = growstage.fit(
        sched, x, y, epochs=3 * args.epochs_per_stage, seed=0, batch_size=32, validation_data=(x_val, y_val),
        checkpoint_dir=os.path.join(out, "checkpoints"), keep=2,
        compile=lambda m, s: m.compile(optimizer=keras.optimizers.Adam(3e-3),
                                       loss="sparse_categorical_crossentropy"))
    png = plot(hist, os.path.join(out, "loss.png"))
    last = hist.epochs[-1]
    print(f"\nfinal loss {last['loss']:.4f}, validation loss {last['val_loss']:.4f}; {hist.rebuilds} rebuilds; "
          f"{time.perf_counter() - t0:.1f}s in all")
    print(f"plot: {png}" if png else "plot skipped: pip install matplotlib (growstage[plot])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
