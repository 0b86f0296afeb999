"""Does growing pay?  A byte-level transformer LM trained from scratch against staged schedules.

Task: :func:`growstage.lm.stdlib_corpus` (Python standard-library sources, no
download; its sha256 is printed and recorded).  Target model:
:func:`growstage.lm.build_lm` (4 layers, d_model 64, 4 heads, ff 256).  Every
run gets the same FLOP budget (scratch's), counted exactly from the shapes by
:func:`growstage.lm.train_flops`; the growth step costs 0 FLOPs, its wall time
is reported.  Staged runs train a smaller model first, grow it once with
``growstage.fit`` (params and Adam state follow the same growth map), then
train the target.  Schedules: depth (2 -> 4 layers) by stacking (G_stack),
interleaving, or new zeroed blocks; width (d_model 32 -> 64, heads 2 -> 4,
ff 128 -> 256) by doubling (block-diagonal), cloning (HyperCloning, with and
without cancelling noise) or LEMON's unequal split; both at once.  The
learning rate follows one schedule over FLOP progress (warm-up, cosine decay
to 10%), kept across growth unless the schedule says otherwise.

Per run: ``flops_to_match`` (the fraction of scratch's FLOPs at which the run
first reaches scratch's final validation loss, same seed; linear between
evaluations; null if never), ``final_val_loss`` (at scratch's total FLOPs),
``jump_at_growth`` (validation loss right after minus right before each growth).

    python benchmarks/lm_growth.py [--quick] [--seeds 0 1 2] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import growstage  # noqa: E402
from growstage.core.stacking import stack_rename  # noqa: E402
from growstage.lm import build_lm, stdlib_corpus, train_flops, val_windows, windows  # noqa: E402

FULL = dict(target=(4, 64, 4, 256), depth_small=(2, 64, 4, 256), width_small=(4, 32, 2, 128),
            both_small=(2, 32, 2, 128), context=64, batch=32, steps=480, chunk=20, val=64, budget=3_000_000,
            peak_lr=2e-3)
QUICK = dict(target=(2, 32, 2, 64), depth_small=(1, 32, 2, 64), width_small=(2, 16, 1, 32),
             both_small=(1, 16, 1, 32), context=32, batch=16, steps=120, chunk=10, val=32, budget=400_000,
             peak_lr=3e-3)
NOISE = 0.1
# name: (which small model, share of the budget it trains for, operator label, stage options at the growth)
SCHEDULES = {
    "scratch": (None, 0.0, "-", {}),
    "depth/stack": ("depth_small", 0.25, "G_stack (stack, rename)", {"stack": "stack"}),
    "depth/interleave": ("depth_small", 0.25, "interleave (rename)", {"stack": "interleave"}),
    "depth/zero-blocks": ("depth_small", 0.25, "new zeroed blocks (preserve)", {"fill": "preserve"}),
    "width/double": ("width_small", 0.15, "double (block-diagonal)", {"fill": "double"}),
    "width/clone": ("width_small", 0.15, "clone, no noise", {"fill": "clone"}),
    "width/hyperclone": ("width_small", 0.15, f"clone + noise {NOISE} (HyperCloning)",
                         {"fill": "clone", "fill_noise": NOISE}),
    "width/lemon": ("width_small", 0.15, "lemon (unequal split)", {"fill": "lemon"}),
    "both/stack+hyperclone": ("both_small", 0.08, "G_stack + HyperCloning",
                              {"stack": "stack", "fill": "clone", "fill_noise": NOISE}),
    "both/zero+double": ("both_small", 0.08, "zeroed blocks + double", {"fill": "double"}),
    "depth/stack+rewarm": ("depth_small", 0.25, "G_stack, LR re-warm-up 40 steps",
                           {"stack": "stack", "lr_at_growth": "rewarm", "warmup_steps": 40}),
}


class FlopProgressLR(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up over 5% then cosine to 10% of the peak, as a function of the FLOPs spent (piecewise in steps)."""

    def __init__(self, peak: float, bounds: list[tuple[int, float, float]]):
        self.peak, self.bounds = peak, bounds  # (first step, progress there, progress per step)

    def __call__(self, step):
        s = keras.ops.cast(step, "float32")
        prog = keras.ops.zeros_like(s)
        for first, p0, dp in self.bounds:
            prog = keras.ops.where(s >= first, p0 + (s - first) * dp, prog)
        prog = keras.ops.clip(prog, 0.0, 1.0)
        warm = keras.ops.minimum(1.0, (prog + 1e-4) / 0.05)
        cos = 0.1 + 0.9 * 0.5 * (1.0 + keras.ops.cos(math.pi * prog))
        return self.peak * warm * cos

    def get_config(self):
        return {"peak": self.peak, "bounds": self.bounds}


class Batches(keras.utils.PyDataset):
    """``chunk`` training batches per epoch, drawn from a seeded stream: every schedule of a seed sees the same."""

    def __init__(self, data, cfg, seed):
        super().__init__()
        self.data, self.cfg, self.seed, self.epoch = data, cfg, seed, 0

    def __len__(self):
        return self.cfg["chunk"]

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return windows(self.data, rng, self.cfg["batch"], self.cfg["context"])


def val_loss(model, xv, yv) -> float:
    logits = keras.ops.convert_to_numpy(model(xv, training=False)).astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, yv[..., None], -1).mean())


class Tracker(keras.callbacks.Callback):
    """Counts FLOPs per epoch and records validation loss; at the first epoch of a new model, the loss before training."""

    def __init__(self, cfg, batches, xv, yv, flops_of):
        super().__init__()
        self.cfg, self.batches, self.xv, self.yv, self.flops_of = cfg, batches, xv, yv, flops_of
        self.flops, self.curve, self.jumps, self.last_model = 0, [], [], None

    def on_train_begin(self, logs=None):
        if self.last_model is not None and self.model is not self.last_model:
            after = val_loss(self.model, self.xv, self.yv)
            self.jumps.append(after - self.curve[-1][1])
            self.curve.append((self.flops, after))
        if self.last_model is None:
            self.curve.append((0, val_loss(self.model, self.xv, self.yv)))
        self.last_model = self.model

    def on_train_end(self, logs=None):
        self.batches.epoch += 1
        self.flops += self.cfg["chunk"] * self.flops_of(self.model)
        self.curve.append((self.flops, val_loss(self.model, self.xv, self.yv)))


def plan_stages(cfg, small_key, share, opts, budget_flops, flops_per_step):
    """Stage dicts for growstage.Schedule, the epochs of each, and the LR bounds."""
    target = cfg["target"]
    if small_key is None:
        epochs = [math.ceil(budget_flops / (cfg["chunk"] * flops_per_step[target]))]
        return [{"spec": target, "repetitions": epochs[0]}], epochs
    small = cfg[small_key]
    e0 = max(1, round(share * budget_flops / (cfg["chunk"] * flops_per_step[small])))
    rest = budget_flops - e0 * cfg["chunk"] * flops_per_step[small]
    e1 = max(1, math.ceil(rest / (cfg["chunk"] * flops_per_step[target])))
    grow = {k: v for k, v in opts.items() if k != "stack"}
    if "stack" in opts:
        names = [f"block{i}_{p}" for i in range(small[0]) for p in ("ln1", "attn", "ln2", "ff1", "ff2")]
        grow["rename"] = stack_rename(names, small[0], target[0], method=opts["stack"])
    return [{"spec": small, "repetitions": e0}, {"spec": target, "repetitions": e1, **grow}], [e0, e1]


def run_one(name, seed, cfg, data, xv, yv, budget_flops, flops_per_step):
    small_key, share, operator, opts = SCHEDULES[name]
    stages, epochs = plan_stages(cfg, small_key, share, opts, budget_flops, flops_per_step)
    bounds, step, spent = [], 0, 0.0
    for st, e in zip(stages, epochs):
        f = flops_per_step[st["spec"]]
        bounds.append((step, spent / budget_flops, f / budget_flops))
        step += e * cfg["chunk"]
        spent += e * cfg["chunk"] * f
    ctx = cfg["context"]

    def build(stage):
        return build_lm(*stage.spec, context=ctx, name=f"lm_{'x'.join(map(str, stage.spec))}")

    def compile_(model, stage):
        opt = keras.optimizers.Adam(FlopProgressLR(cfg["peak_lr"], bounds), beta_2=0.99, clipnorm=1.0)
        model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    batches = Batches(data.train, cfg, seed)
    tracker = Tracker(cfg, batches, xv, yv, lambda m: train_flops(m, cfg["batch"])["total"])
    t0 = time.perf_counter()
    hist = growstage.fit(growstage.Schedule(build, stages=stages, fill="init"), batches, epochs=sum(epochs),
                         compile=compile_, seed=1000 * seed, log=None, callbacks=[tracker])
    return {"name": name, "operator": operator, "seed": seed, "stages": [list(s["spec"]) for s in stages],
            "epochs": epochs, "growth_options": {k: v for k, v in opts.items()},
            "growth_seconds": [t["seconds"] for t in hist.transitions if t.get("rebuilt")],
            "jump_at_growth": tracker.jumps, "curve": tracker.curve, "seconds": time.perf_counter() - t0}


def at_flops(curve, flops):
    """The validation loss at ``flops`` (linear between evaluations; the last one past the end)."""
    for (f0, l0), (f1, l1) in zip(curve, curve[1:]):
        if f0 <= flops <= f1 and f1 > f0:
            return l0 + (l1 - l0) * (flops - f0) / (f1 - f0)
    return curve[-1][1]


def flops_to_reach(curve, loss):
    for (f0, l0), (f1, l1) in zip(curve, curve[1:]):
        if l1 <= loss:
            return f0 + (f1 - f0) * ((l0 - loss) / (l0 - l1) if l0 > l1 else 1.0)
    return None


def summarize(records: list[dict]) -> list[dict]:
    """One row per schedule: means and spreads over seeds."""
    rows = []
    for name in dict.fromkeys(r["name"] for r in records):
        rs = [r for r in records if r["name"] == name]
        ftm = [r["flops_to_match"] for r in rs]
        hit = [f for f in ftm if f is not None]
        fin = [r["final_val_loss"] for r in rs]
        jumps = [j for r in rs for j in r["jump_at_growth"]]
        secs = [s for r in rs for s in r["growth_seconds"]]
        rows.append({"name": name, "operator": rs[0]["operator"], "seeds": len(rs), "reached": len(hit),
                     "flops_to_match_mean": float(np.mean(hit)) if len(hit) == len(rs) else None,
                     "flops_to_match_min": min(hit) if hit else None, "flops_to_match_max": max(hit) if hit else None,
                     "final_val_loss_mean": float(np.mean(fin)), "final_val_loss_std": float(np.std(fin)),
                     "jump_mean": float(np.mean(jumps)) if jumps else None,
                     "jump_max_abs": float(np.max(np.abs(jumps))) if jumps else None,
                     "growth_seconds_mean": float(np.mean(secs)) if secs else None})
    return rows


def table(rows: list[dict]) -> str:
    def f(v, fmt):
        return "never" if v is None else format(v, fmt)
    out = ["| schedule | operator | FLOPs to match scratch (mean, min-max) | final val loss (mean ± std) | "
           "loss jump at growth | growth time |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["flops_to_match_mean"] is not None:
            ftm = f"{r['flops_to_match_mean']:.0%} ({r['flops_to_match_min']:.0%}-{r['flops_to_match_max']:.0%})"
        elif r["reached"]:
            ftm = f"{r['reached']}/{r['seeds']} seeds ({r['flops_to_match_min']:.0%}-{r['flops_to_match_max']:.0%})"
        else:
            ftm = "never"
        jump = "-" if r["jump_mean"] is None else f"{r['jump_mean']:+.4f} (max abs {r['jump_max_abs']:.1e})"
        secs = "-" if r["growth_seconds_mean"] is None else f"{r['growth_seconds_mean']:.2f} s"
        out.append(f"| {r['name']} | {r['operator']} | {ftm} | {r['final_val_loss_mean']:.4f} ± "
                   f"{r['final_val_loss_std']:.4f} | {jump} | {secs} |")
    return "\n".join(out)


def plot(records: list[dict], budget: float, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["name"] for r in records))
    colors = {n: plt.cm.tab20(i / max(1, len(names) - 1)) for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(10, 6))
    for r in records:
        f, v = zip(*r["curve"])
        ax.plot(np.array(f) / budget, v, color=colors[r["name"]], lw=2.0 if r["name"] == "scratch" else 1.0,
                alpha=0.9, label=r["name"] if r["seed"] == records[0]["seed"] else None)
    lo = min(v for r in records for _, v in r["curve"][len(r["curve"]) // 3:])
    ax.set_ylim(lo - 0.05, lo + 1.2)
    ax.set_xlabel("training FLOPs / scratch's total")
    ax.set_ylabel("validation loss (nats per byte)")
    ax.set_title("byte-level LM on the Python stdlib: scratch vs staged growth (every seed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small model and one seed: about 3 minutes")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--schedules", nargs="*", default=None, choices=list(SCHEDULES),
                    help="default: all (the full run leaves out width/clone, the no-noise ablation, for time)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    chosen = args.schedules or [n for n in SCHEDULES if args.quick or n != "width/clone"]
    names = ["scratch"] + [n for n in chosen if n != "scratch"]
    os.makedirs(args.out, exist_ok=True)
    data = stdlib_corpus(cfg["budget"])
    print("data:", data.describe(), flush=True)
    xv, yv = val_windows(data.val, cfg["context"], cfg["val"])
    specs = {cfg[k] for k in ("target", "depth_small", "width_small", "both_small")}
    flops_per_step = {s: train_flops(build_lm(*s, context=cfg["context"]), cfg["batch"])["total"] for s in specs}
    budget = cfg["steps"] * flops_per_step[cfg["target"]]
    meta = {"command": " ".join(["python", "benchmarks/lm_growth.py"] + sys.argv[1:]), "config": cfg,
            "seeds": seeds, "data_sha256": data.sha256, "data": data.describe(), "budget_flops": budget,
            "flops_per_step": {"x".join(map(str, k)): v for k, v in flops_per_step.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                       f"Keras {keras.__version__}", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    records: list[dict] = []
    path = os.path.join(args.out, "lm_growth_quick.json" if args.quick else "lm_growth.json")
    for seed in seeds:
        ref = None
        for name in names:
            rec = run_one(name, seed, cfg, data, xv, yv, budget, flops_per_step)
            if name == "scratch":
                ref = at_flops(rec["curve"], budget)
            rec["final_val_loss"] = at_flops(rec["curve"], budget)
            reach = flops_to_reach(rec["curve"], ref)
            rec["flops_to_match"] = None if reach is None or reach > budget * (1 + 1e-9) else reach / budget
            records.append(rec)
            print(f"seed {seed} {name:24s} final {rec['final_val_loss']:.4f} flops_to_match "
                  f"{rec['flops_to_match']} jumps {[round(j, 5) for j in rec['jump_at_growth']]} "
                  f"{rec['seconds']:.0f}s", flush=True)
            with open(path, "w") as f:
                json.dump({**meta, "summary": summarize(records), "records": records}, f, indent=1)
    rows = summarize(records)
    md = table(rows)
    with open(path, "w") as f:
        json.dump({**meta, "summary": rows, "records": records, "table": md}, f, indent=1)
    with open(path.replace(".json", ".md"), "w") as f:
        f.write(md + "\n")
    plot(records, budget, path.replace(".json", ".png"))
    print(md)
    print("wrote", path)


if __name__ == "__main__":
    main()
