"""Growth quality (issue 5): staged growth with each fill vs training the final model from scratch.

Task: regress the outputs of a random teacher network (built-in synthetic
data).  Final architecture: a 6-layer ReLU MLP of width 64.  Staged schedule:
2 layers x32 -> 4 layers x32 -> 6 layers x64 (deeper twice, then width x2),
with the same FLOP budget as the from-scratch run (training FLOPs ~ 6 x params
x samples).  For every run: the validation loss vs FLOPs (PNG), the loss jump
at each growth, and the FLOPs at which it first reaches the from-scratch run's
final loss.

    python benchmarks/growth_quality.py [--budget-steps 3000] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import growstage
from growstage.framework.optimizer import optimizer_state, transfer_optimizer_state

IN, OUT, BATCH, CHUNK = 16, 4, 64, 100
STAGES = [(2, 32, 0.15), (4, 32, 0.25), (6, 64, 0.60)]  # depth, width, share of the budget


def build(depth: int, width: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    x = keras.Input((IN,))
    h = x
    for i in range(1, depth + 1):
        h = keras.layers.Dense(width, activation="relu", name=f"h{i}")(h)
    return keras.Model(x, keras.layers.Dense(OUT, name="out")(h), name=f"mlp_{depth}x{width}")


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    teacher = [rng.normal(size=s) / np.sqrt(s[0]) for s in [(IN, 48), (48, 48), (48, OUT)]]

    def f(x):
        h = x
        for w in teacher[:-1]:
            h = np.tanh(h @ w)
        return (h @ teacher[-1]).astype("f4")
    x = rng.normal(size=(16384, IN)).astype("f4")
    xv = rng.normal(size=(2048, IN)).astype("f4")
    return x, f(x), xv, f(xv)


class Run:
    def __init__(self, name, x, y, xv, yv):
        self.name, self.x, self.y, self.xv, self.yv = name, x, y, xv, yv
        self.flops, self.curve, self.spikes = 0.0, [], []
        self.rng = np.random.default_rng(1)

    def val(self, model) -> float:
        return float(np.mean((model.predict(self.xv, batch_size=1024, verbose=0) - self.yv) ** 2))

    def train(self, model, flops: float) -> None:
        per_step = 6.0 * model.count_params() * BATCH
        steps = max(CHUNK, int(flops / per_step))
        for _ in range(steps // CHUNK):
            idx = self.rng.integers(0, len(self.x), CHUNK * BATCH)
            model.fit(self.x[idx], self.y[idx], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            self.flops += CHUNK * per_step
            self.curve.append((self.flops, self.val(model)))


def compile_(model):
    model.compile(keras.optimizers.Adam(1e-3), "mse")


def scratch(budget, *d):
    run = Run("scratch 6x64", *d)
    model = build(6, 64, seed=1)
    compile_(model)
    run.curve.append((0.0, run.val(model)))
    run.train(model, budget)
    return run


def staged(budget, fill, *d):
    run = Run(f"staged, fill={fill}", *d)
    model = None
    for k, (depth, width, share) in enumerate(STAGES):
        new = build(depth, width, seed=10 + k)
        compile_(new)
        if model is None:
            run.curve.append((0.0, run.val(new)))
        else:
            before = run.val(model)
            p = growstage.plan(model, new, mode="subset", fill=fill, allow_new_layers=True, fill_seed=k)
            growstage.apply(p)
            transfer_optimizer_state(optimizer_state(model), p, new)
            after = run.val(new)
            run.spikes.append({"growth": f"{STAGES[k - 1][0]}x{STAGES[k - 1][1]} -> {depth}x{width}",
                               "before": before, "after": after, "jump": after - before})
            run.curve.append((run.flops, after))
        model = new
        run.train(model, budget * share)
    return run


def first_reaching(run: Run, target: float) -> float | None:
    return next((f for f, loss in run.curve if loss <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-steps", type=int, default=3000, help="steps of the final model the budget buys")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    d = data()
    budget = 6.0 * build(6, 64, 0).count_params() * BATCH * args.budget_steps
    runs = [scratch(budget, *d)] + [staged(budget, fill, *d) for fill in ("init", "preserve", "net2net")]
    target = runs[0].curve[-1][1]
    rows = []
    for r in runs:
        reach = first_reaching(r, target)
        rows.append({"run": r.name, "final_loss": r.curve[-1][1], "flops": r.flops, "spikes": r.spikes,
                     "flops_to_scratch_final": reach, "fraction_of_budget": reach / budget if reach else None})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "growth_quality.json"), "w") as f:
        json.dump({"budget_flops": budget, "scratch_final_loss": target, "runs": rows,
                   "seconds": time.perf_counter() - t0}, f, indent=1)
    print(f"budget {budget:.3g} FLOPs; from-scratch final val loss {target:.5f}")
    print(f"{'run':<24} {'final loss':>10} {'reaches scratch final at':>26}  loss jump at each growth")
    for r in rows:
        reach = f"{r['fraction_of_budget']:.0%} of budget" if r["fraction_of_budget"] else "never"
        jumps = ", ".join(f"{s['before']:.4f}->{s['after']:.4f}" for s in r["spikes"]) or "-"
        print(f"{r['run']:<24} {r['final_loss']:>10.5f} {reach:>26}  {jumps}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in runs:
            ax.plot([f for f, _ in r.curve], [v for _, v in r.curve], label=r.name)
        ax.axhline(target, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("training FLOPs"), ax.set_ylabel("validation MSE"), ax.set_yscale("log")
        ax.legend(), fig.tight_layout()
        fig.savefig(os.path.join(args.out, "growth_quality.png"), dpi=110)
        print(f"plot: {os.path.join(args.out, 'growth_quality.png')}")
    except ImportError:
        print("matplotlib not installed: no plot")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
