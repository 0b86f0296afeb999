"""Summary rows, the Markdown table and the plot of ``benchmarks/lm_growth.py``.

A growth *pays* in a seed when the grown model reaches scratch's final validation loss with fewer
FLOPs than scratch **and** ends (at scratch's FLOPs) below its starting model trained alone for the
whole budget (the schedule's ``alone`` row, same seed).  Without the second condition a target too
big for the budget makes any growth look good: the small model alone would have done better still.

    python benchmarks/lm_growth_report.py benchmarks/lm_growth.json benchmarks/lm_growth_gpt2.json \\
        benchmarks/lm_growth_llama.json --png benchmarks/lm_growth.png
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def _span(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def summarize(records: list[dict], alone_of) -> list[dict]:
    """One row per schedule: means and min-max over seeds, and whether the growth pays (per seed)."""
    rows = []
    final = {(r["name"], r["seed"]): r["final_val_loss"] for r in records}
    for name in dict.fromkeys(r["name"] for r in records):
        rs = [r for r in records if r["name"] == name]
        ftm = [r["flops_to_match"] for r in rs]
        hit = [f for f in ftm if f is not None]
        fin = [r["final_val_loss"] for r in rs]
        jumps = [j for r in rs for j in r["jump_at_growth"]]
        secs = [s for r in rs for s in r["growth_seconds"]]
        row = {"name": name, "operator": rs[0]["operator"], "seeds": len(rs), "reached": len(hit),
               "flops_to_match_mean": float(np.mean(hit)) if len(hit) == len(rs) else None,
               "flops_to_match_min": min(hit) if hit else None, "flops_to_match_max": max(hit) if hit else None,
               "final_val_loss_mean": float(np.mean(fin)), "final_val_loss_std": float(np.std(fin)),
               "final_val_loss_min": min(fin), "final_val_loss_max": max(fin),
               "jump_mean": float(np.mean(jumps)) if jumps else None,
               "jump_max_abs": float(np.max(np.abs(jumps))) if jumps else None,
               "growth_seconds_mean": float(np.mean(secs)) if secs else None}
        alone = alone_of(name)
        if alone is not None:
            base = [final.get((alone, r["seed"])) for r in rs]
            row["alone"] = alone
            if all(b is not None for b in base):
                beats = [f < b for f, b in zip(fin, base)]
                pays = [bool(b and f is not None and f < 1.0) for b, f in zip(beats, ftm)]
                row.update(alone_final_val_loss_mean=float(np.mean(base)), beats_alone=int(sum(beats)),
                           margin_to_alone_mean=float(np.mean(np.subtract(fin, base))),
                           margin_to_alone_min=float(np.min(np.subtract(fin, base))),
                           margin_to_alone_max=float(np.max(np.subtract(fin, base))),
                           pays_seeds=int(sum(pays)),
                           pays="yes" if all(pays) else "no" if not any(pays) else f"{sum(pays)} of {len(rs)} seeds")
        rows.append(row)
    return rows


def _ftm(r: dict) -> str:
    if r["flops_to_match_mean"] is not None:
        return f"{r['flops_to_match_mean']:.0%} ({r['flops_to_match_min']:.0%}-{r['flops_to_match_max']:.0%})"
    if r["reached"]:
        return f"{r['reached']}/{r['seeds']} seeds ({r['flops_to_match_min']:.0%}-{r['flops_to_match_max']:.0%})"
    return "never"


def table(rows: list[dict]) -> str:
    """The summary as Markdown: FLOPs to match scratch, final loss, the margin to the small model alone, pays."""
    out = ["| schedule | operator | FLOPs to reach scratch's final loss (mean, min-max) | final val loss "
           "(mean, min-max) | vs. its small model alone (final loss difference, min-max) | pays? | "
           "loss jump at growth | growth time |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        jump = "-" if r["jump_mean"] is None else f"{r['jump_mean']:+.4f} (max abs {r['jump_max_abs']:.1e})"
        secs = "-" if r["growth_seconds_mean"] is None else f"{r['growth_seconds_mean']:.2f} s"
        if "margin_to_alone_mean" in r:
            vs = (f"{r['margin_to_alone_mean']:+.3f} ({r['margin_to_alone_min']:+.3f} to "
                  f"{r['margin_to_alone_max']:+.3f}) vs `{r['alone']}`")
            pays = f"**{r['pays']}**"
        elif "alone" in r:
            vs, pays = f"`{r['alone']}` not run", "not judged"
        else:
            vs, pays = "-", "-"
        out.append(f"| {r['name']} | {r['operator']} | {_ftm(r)} | {r['final_val_loss_mean']:.3f} "
                   f"({r['final_val_loss_min']:.3f}-{r['final_val_loss_max']:.3f}) | {vs} | {pays} | {jump} | {secs} |")
    return "\n".join(out)


def growth_points(curve: list) -> list[tuple[float, float]]:
    """Where a curve grows: the evaluation right after a new model starts (two points at the same FLOPs)."""
    return [tuple(b) for a, b in zip(curve, curve[1:]) if a[0] == b[0]]


def _panel(ax, doc: dict, title: str) -> None:
    import matplotlib.pyplot as plt

    records, budget = doc["records"], doc["budget_flops"]
    names = list(dict.fromkeys(r["name"] for r in records))
    colors = {n: plt.cm.tab20(i / max(1, len(names) - 1)) for i, n in enumerate(names)}
    for name in names:
        rs = [r for r in records if r["name"] == name]
        f = np.array([p[0] for p in rs[0]["curve"]]) / budget
        if any(len(r["curve"]) != len(rs[0]["curve"]) for r in rs):
            rs = rs[:1]
        v = np.mean([[p[1] for p in r["curve"]] for r in rs], axis=0)
        style = dict(lw=2.2, color="k") if name == "scratch" else dict(lw=1.2, color=colors[name])
        if name.startswith("alone/"):
            style["ls"] = "--"
        ax.plot(f, v, label=name, alpha=0.9, **style)
        pts = growth_points(list(zip(f, v)))
        if pts:
            ax.plot(*zip(*pts), "o", ms=4, color=style["color"])
    tail = [p[1] for r in records for p in r["curve"][len(r["curve"]) // 3:]]
    ax.set_ylim(min(tail) - 0.05, min(tail) + 1.0)
    ax.set_xlabel("training FLOPs / scratch's total")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot(docs: dict[str, dict], path: str) -> None:
    """Validation loss against FLOPs, the mean over seeds per schedule; dots: right after each growth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(docs), figsize=(6.5 * len(docs), 6), squeeze=False)
    for ax, (title, doc) in zip(axes[0], docs.items()):
        _panel(ax, doc, title)
    axes[0][0].set_ylabel("validation loss (nats per byte), mean over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description="plot benchmarks/lm_growth*.json together")
    ap.add_argument("json", nargs="+")
    ap.add_argument("--png", required=True)
    args = ap.parse_args()
    docs = {}
    for p in args.json:
        with open(p) as f:
            doc = json.load(f)
        docs[f"{doc.get('model', 'lm')}: {p.rsplit('/', 1)[-1]}"] = doc
    plot(docs, args.png)
    print("wrote", args.png)


if __name__ == "__main__":
    main()
