"""Does growing pay?  A byte-level transformer LM trained from scratch against staged schedules.

Task: :func:`growstage.lm.stdlib_corpus` (Python standard-library sources, no
download; its sha256 is printed and recorded).  Models (``--model``): the
project's own :func:`growstage.lm.build_lm`, or keras_hub's ``GPT2CausalLM`` /
``LlamaCausalLM`` built offline from tiny configs (``benchmarks/lm_families.py``).
Every run gets the same FLOP budget (scratch's), counted exactly from the shapes;
the growth step costs 0 FLOPs, its wall time is reported.  Staged runs train a
smaller model first, grow it inside ``growstage.fit`` (params and Adam state
follow the same growth map) once or several times (``progressive/...``), then
train the target.  Operators: stacking (G_stack), interleaving, new zeroed
blocks (``fill="preserve"``), width by doubling / cloning / LEMON, both at once.
``alone/...`` rows train a growth's starting model alone for the whole budget:
a growth *pays* only if it reaches scratch's loss with fewer FLOPs **and** ends
below its starting model alone (``benchmarks/lm_growth_report.py``).  The
learning rate follows one schedule over FLOP progress (warm-up, cosine decay to
10%), kept across growth unless the schedule says otherwise.

Per run: ``flops_to_match`` (the fraction of scratch's FLOPs at which the run
first reaches scratch's final validation loss, same seed; linear between
evaluations; null if never), ``final_val_loss`` (at scratch's total FLOPs),
``jump_at_growth`` (validation loss right after minus right before each growth).

    python benchmarks/lm_growth.py [--model lm|gpt2|llama] [--quick] [--seeds 0 1 2] [--out benchmarks/results]
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
from growstage.lm import stdlib_corpus, val_windows, windows  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_families  # noqa: E402
from lm_growth_report import plot, summarize, table  # noqa: E402

# the families whose models still need allow_auto_names (none, once growstage knows keras_hub's names)
AUTO_NAMES: set[str] = set()

FULL = dict(target=(4, 64, 4, 256), depth_small=(2, 64, 4, 256), width_small=(4, 32, 2, 128),
            both_small=(2, 32, 2, 128), one_layer=(1, 64, 4, 256), context=64, batch=32, steps=480, chunk=20,
            val=64, budget=3_000_000, peak_lr=2e-3, warmup=0.05)
QUICK = dict(target=(2, 32, 2, 64), depth_small=(1, 32, 2, 64), width_small=(2, 16, 1, 32),
             both_small=(1, 16, 1, 32), one_layer=(1, 32, 2, 64), context=32, batch=16, steps=120, chunk=10, val=32,
             budget=400_000, peak_lr=3e-3, warmup=0.05)
# keras_hub families: half the project LM's width (4 x 32, 4 heads of 8, ff 128; small models 2 x 32, 4 x 16 with
# 2 heads, 2 x 16, 1 x 32), context 32, a longer warm-up (10%: GPT-2 from scratch stalls near loss 3.0 after a
# short one), the best learning rate seen for each family; budget: what the shared 2-core machine allowed (see
# benchmarks/README.md, lm_growth on keras_hub models, for how it was chosen and what it means)
_HUB = dict(FULL, target=(4, 32, 4, 128), depth_small=(2, 32, 4, 128), width_small=(4, 16, 2, 64),
            both_small=(2, 16, 2, 64), one_layer=(1, 32, 4, 128), context=32, steps=240, chunk=20, warmup=0.1)
HUB = {"gpt2": dict(_HUB, peak_lr=3e-3), "llama": dict(_HUB, peak_lr=1e-2)}
HUB_QUICK = dict(QUICK, target=(4, 32, 4, 64), depth_small=(2, 32, 4, 64), width_small=(4, 16, 2, 32),
                 both_small=(2, 16, 2, 32), one_layer=(1, 32, 4, 64), steps=60, warmup=0.1)
NOISE = 0.1
# the starting models: the alone row of each is named after its role, its spec is in the operator column
SMALL = {"depth_small": "depth-small", "width_small": "width-small", "both_small": "both-small",
         "one_layer": "one-layer"}
# name: (operator label, stages: (which model, share of the budget it trains for; None = the rest, options at growth))
SCHEDULES = {
    "scratch": ("-", [("target", None, {})]),
    "depth/stack": ("G_stack (stack, rename)", [("depth_small", 0.25, {}), ("target", None, {"stack": "stack"})]),
    "depth/interleave": ("interleave (rename)", [("depth_small", 0.25, {}),
                                                 ("target", None, {"stack": "interleave"})]),
    "depth/zero-blocks": ("new zeroed blocks (preserve)", [("depth_small", 0.25, {}),
                                                           ("target", None, {"fill": "preserve"})]),
    "width/double": ("double (block-diagonal)", [("width_small", 0.15, {}), ("target", None, {"fill": "double"})]),
    "width/clone": ("clone, no noise", [("width_small", 0.15, {}), ("target", None, {"fill": "clone"})]),
    "width/hyperclone": (f"clone + noise {NOISE} (HyperCloning)",
                         [("width_small", 0.15, {}), ("target", None, {"fill": "clone", "fill_noise": NOISE})]),
    "width/lemon": ("lemon (unequal split)", [("width_small", 0.15, {}), ("target", None, {"fill": "lemon"})]),
    "both/stack+hyperclone": ("G_stack + HyperCloning", [("both_small", 0.08, {}), (
        "target", None, {"stack": "stack", "fill": "clone", "fill_noise": NOISE})]),
    "both/zero+double": ("zeroed blocks + double", [("both_small", 0.08, {}), ("target", None, {"fill": "double"})]),
    "depth/stack+rewarm": ("G_stack, LR re-warm-up 40 steps", [("depth_small", 0.25, {}), (
        "target", None, {"stack": "stack", "lr_at_growth": "rewarm", "warmup_steps": 40})]),
    "progressive/zero-blocks": ("1 -> 2 -> 4 layers, new zeroed blocks", [
        ("one_layer", 0.08, {}), ("depth_small", 0.17, {"fill": "preserve"}), ("target", None, {"fill": "preserve"})]),
    "progressive/stack": ("1 -> 2 -> 4 layers, G_stack", [
        ("one_layer", 0.08, {}), ("depth_small", 0.17, {"stack": "stack"}), ("target", None, {"stack": "stack"})]),
    **{f"alone/{label}": (f"the {key} model alone, whole budget", [(key, None, {})]) for key, label in SMALL.items()},
}
# the schedules of each family's full run (the project's LM: the committed run's, plus its starting models alone)
RUNS = {"lm": ["depth/zero-blocks", "both/zero+double", "depth/stack", "depth/interleave", "depth/stack+rewarm",
               "both/stack+hyperclone", "width/lemon", "width/hyperclone", "width/double"],
        "hub": ["depth/zero-blocks", "progressive/zero-blocks", "depth/stack", "width/double", "both/zero+double",
                "depth/interleave"]}


def alone_of(name: str) -> str | None:
    """The ``alone`` row of a growth schedule's starting model."""
    first = SCHEDULES[name][1][0][0]
    return f"alone/{SMALL[first]}" if first in SMALL and not name.startswith("alone/") else None


class FlopProgressLR(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up over 5% then cosine to 10% of the peak, as a function of the FLOPs spent (piecewise in steps)."""

    def __init__(self, peak: float, bounds: list[tuple[int, float, float]], warmup: float = 0.05):
        self.peak, self.bounds, self.warmup = peak, bounds, warmup  # (first step, progress there, progress per step)

    def __call__(self, step):
        s = keras.ops.cast(step, "float32")
        prog = keras.ops.zeros_like(s)
        for first, p0, dp in self.bounds:
            prog = keras.ops.where(s >= first, p0 + (s - first) * dp, prog)
        prog = keras.ops.clip(prog, 0.0, 1.0)
        warm = keras.ops.minimum(1.0, (prog + 1e-4) / self.warmup)
        cos = 0.1 + 0.9 * 0.5 * (1.0 + keras.ops.cos(math.pi * prog))
        return self.peak * warm * cos

    def get_config(self):
        return {"peak": self.peak, "bounds": self.bounds, "warmup": self.warmup}


class Batches(keras.utils.PyDataset):
    """``chunk`` training batches per epoch, drawn from a seeded stream: every schedule of a seed sees the same."""

    def __init__(self, data, cfg, seed, family="lm"):
        super().__init__()
        self.data, self.cfg, self.seed, self.epoch, self.family = data, cfg, seed, 0, family

    def __len__(self):
        return self.cfg["chunk"]

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        x, y = windows(self.data, rng, self.cfg["batch"], self.cfg["context"])
        return lm_families.inputs(self.family, x), y


def feed(batches: Batches, family: str):
    """What ``fit`` gets: the PyDataset, or for keras_hub tasks (whose ``fit`` takes arrays or datasets) a
    tf.data pipeline over it, re-read at every epoch, so every family sees the same batches."""
    if family == "lm":
        return batches
    import tensorflow as tf

    ctx, b = batches.cfg["context"], batches.cfg["batch"]
    spec = ({"token_ids": tf.TensorSpec((b, ctx), tf.int32), "padding_mask": tf.TensorSpec((b, ctx), tf.int32)},
            tf.TensorSpec((b, ctx), tf.int32))
    return tf.data.Dataset.from_generator(lambda: (batches[i] for i in range(len(batches))), output_signature=spec)


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


def plan_stages(cfg, family, stages, budget_flops, flops_per_step):
    """Stage dicts for growstage.Schedule and the epochs of each: every stage but the last trains for its share
    of the budget, the last for the rest."""
    out, epochs, spent, prev = [], [], 0.0, None
    for i, (key, share, opts) in enumerate(stages):
        spec, per_epoch = cfg[key], cfg["chunk"] * flops_per_step[cfg[key]]
        last = i == len(stages) - 1
        e = math.ceil((budget_flops - spent) / per_epoch) if last else max(1, round(share * budget_flops / per_epoch))
        spent += e * per_epoch
        grow = {k: v for k, v in opts.items() if k != "stack"}
        if "stack" in opts:
            keys = growstage.snapshot(lm_families.build(family, prev, cfg["context"]),
                                      allow_auto_names=family in AUTO_NAMES)
            layers, block = lm_families.block_names(family, keys, prev[0])
            grow["rename"] = stack_rename(layers, prev[0], spec[0], method=opts["stack"], block=block)
        out.append({"spec": spec, "repetitions": e, **grow})
        epochs.append(e)
        prev = spec
    return out, epochs


def run_one(name, seed, cfg, family, data, xv, yv, budget_flops, flops_per_step):
    operator, plan = SCHEDULES[name]
    stages, epochs = plan_stages(cfg, family, plan, budget_flops, flops_per_step)
    bounds, step, spent = [], 0, 0.0
    for st, e in zip(stages, epochs):
        f = flops_per_step[st["spec"]]
        bounds.append((step, spent / budget_flops, f / budget_flops))
        step += e * cfg["chunk"]
        spent += e * cfg["chunk"] * f
    ctx = cfg["context"]

    def build(stage):
        return lm_families.build(family, stage.spec, ctx, name=None if family != "lm" else
                                 f"lm_{'x'.join(map(str, stage.spec))}")

    def compile_(model, stage):
        opt = keras.optimizers.Adam(FlopProgressLR(cfg["peak_lr"], bounds, cfg["warmup"]), beta_2=0.99,
                                    clipnorm=1.0)
        model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    batches = Batches(data.train, cfg, seed, family)
    tracker = Tracker(cfg, batches, lm_families.inputs(family, xv), yv,
                      lambda m: lm_families.flops(family, m, cfg["batch"], ctx))
    t0 = time.perf_counter()
    hist = growstage.fit(growstage.Schedule(build, stages=stages, fill="init"), feed(batches, family),
                         epochs=sum(epochs),
                         compile=compile_, seed=1000 * seed, log=None, callbacks=[tracker],
                         allow_auto_names=family in AUTO_NAMES)
    return {"name": name, "operator": operator, "seed": seed, "stages": [list(s["spec"]) for s in stages],
            "epochs": epochs, "growth_options": [{k: v for k, v in o.items()} for _, _, o in plan[1:]],
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


def config(family: str, quick: bool) -> dict:
    if family == "lm":
        return QUICK if quick else FULL
    return HUB_QUICK if quick else HUB[family]


def result_path(out: str, family: str, quick: bool) -> str:
    return os.path.join(out, "lm_growth" + ("" if family == "lm" else f"_{family}") + ("_quick" if quick else "")
                        + ".json")


def score(records: list[dict], budget: float) -> None:
    """``final_val_loss`` and ``flops_to_match`` (against the same seed's scratch) of every record."""
    ref = {r["seed"]: at_flops(r["curve"], budget) for r in records if r["name"] == "scratch"}
    for r in records:
        r["final_val_loss"] = at_flops(r["curve"], budget)
        reach = flops_to_reach(r["curve"], ref[r["seed"]])
        r["flops_to_match"] = None if reach is None or reach > budget * (1 + 1e-9) else reach / budget


def write(path: str, meta: dict, records: list[dict], final: bool) -> None:
    rows = summarize(records, alone_of)
    doc = {**meta, "summary": rows, "records": records}
    if final:
        doc["table"] = table(rows)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    if final:
        with open(path.replace(".json", ".md"), "w") as f:
            f.write(doc["table"] + "\n")
        plot({meta["model"]: doc}, path.replace(".json", ".png"))
        print(doc["table"])
        print("wrote", path, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=lm_families.FAMILIES, default="lm",
                    help="lm: growstage.lm.build_lm; gpt2 / llama: keras_hub GPT2CausalLM / LlamaCausalLM")
    ap.add_argument("--quick", action="store_true", help="a small model and one seed: a few minutes")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--schedules", nargs="*", default=None, choices=list(SCHEDULES),
                    help="default: the family's full list (RUNS) and the alone runs of its starting models")
    ap.add_argument("--merge", action="store_true",
                    help="add these runs to the result file's records (same name and seed replaced); "
                         "scratch is then read from the file")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    fam, cfg = args.model, config(args.model, args.quick)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    extra = ["width/clone"] if args.quick and fam == "lm" else []  # the no-noise ablation: quick runs only
    chosen = args.schedules or RUNS["lm" if fam == "lm" else "hub"] + extra
    alones = [a for a in dict.fromkeys(map(alone_of, chosen)) if a and a not in chosen and not args.schedules]
    chosen = alones + chosen  # the baselines first: a cut-short run still says whether growth paid
    path = result_path(args.out, fam, args.quick)
    old: list[dict] = []
    if args.merge:
        with open(path) as f:
            old = json.load(f)["records"]
    # a merge runs scratch only when asked to (new seeds); otherwise it reads scratch from the file
    names = ([] if args.merge and "scratch" not in chosen else ["scratch"]) + [n for n in chosen if n != "scratch"]
    os.makedirs(args.out, exist_ok=True)
    data = stdlib_corpus(cfg["budget"])
    print("data:", data.describe(), flush=True)
    xv, yv = val_windows(data.val, cfg["context"], cfg["val"])
    specs = {cfg[k] for k in ("target", *SMALL)}
    flops_per_step = {s: lm_families.flops(fam, lm_families.build(fam, s, cfg["context"]), cfg["batch"],
                                           cfg["context"]) for s in specs}
    budget = cfg["steps"] * flops_per_step[cfg["target"]]
    meta = {"command": " ".join(["python", "benchmarks/lm_growth.py"] + sys.argv[1:]), "model": fam,
            "config": cfg, "seeds": seeds, "data_sha256": data.sha256, "data": data.describe(),
            "budget_flops": budget, "flops_per_step": {"x".join(map(str, k)): v for k, v in flops_per_step.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                       f"Keras {keras.__version__}", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.merge:
        with open(path) as f:
            prev = json.load(f)
        meta = {**{k: v for k, v in prev.items() if k not in ("summary", "records", "table")},
                "merged": prev.get("merged", []) + [{"command": meta["command"], "date": meta["date"]}]}
        budget = prev["budget_flops"]
    records = list(old)
    for seed in seeds:
        for name in names:
            rec = run_one(name, seed, cfg, fam, data, xv, yv, budget, flops_per_step)
            records = [r for r in records if (r["name"], r["seed"]) != (name, seed)] + [rec]
            score(records, budget)
            print(f"seed {seed} {name:24s} final {rec['final_val_loss']:.4f} flops_to_match "
                  f"{rec['flops_to_match']} jumps {[round(j, 5) for j in rec['jump_at_growth']]} "
                  f"{rec['seconds']:.0f}s", flush=True)
            write(path, meta, records, final=False)
    write(path, meta, records, final=True)


if __name__ == "__main__":
    main()
