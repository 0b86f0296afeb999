"""benchmarks/lm_growth.py (issue 24, item 7): FLOPs of keras_hub models, stage plans, and the verdict
"growth pays" that compares every growth with its starting model trained alone."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
keras_hub = pytest.importorskip("keras_hub")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_lm_growth", ROOT / "benchmarks" / "lm_growth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("family,gates", [("gpt2", 2), ("llama", 3)])
def test_hub_flops_match_the_hand_formula(family, gates):
    import lm_families

    layers, d, heads, ff, batch, ctx = 2, 16, 4, 24, 3, 8
    m = lm_families.build(family, (layers, d, heads, ff), ctx)
    tok, hd = batch * ctx, d // heads
    kv = heads if family == "gpt2" else heads // 2  # Llama: grouped-query attention, half the KV heads
    proj = d * heads * hd * 2 + d * kv * hd * 2  # query + output, key + value
    per_block = 2 * tok * (proj + gates * d * ff) + 2 * 2 * batch * heads * ctx * ctx * hd
    fwd = layers * per_block + 2 * tok * d * 256
    assert lm_families.hub_train_flops(m, batch, ctx) == {"forward": fwd, "backward": 2 * fwd, "total": 3 * fwd}
    x = np.zeros((batch, ctx), "int32")
    assert tuple(m(lm_families.inputs(family, x)).shape) == (batch, ctx, 256)


def test_stages_share_the_budget_and_stack_names_the_blocks():
    bench = _bench()
    cfg = dict(bench.HUB_QUICK)
    flops = {cfg[k]: f for k, f in zip(("one_layer", "depth_small", "target"), (1.0, 2.0, 4.0))}
    budget = cfg["chunk"] * 4.0 * 10  # ten epochs of the target
    stages, epochs = bench.plan_stages(cfg, "gpt2", bench.SCHEDULES["progressive/stack"][1], budget, flops)
    assert [s["spec"][0] for s in stages] == [1, 2, 4]
    # in target epochs: 1 layer 8% of 40 = 3.2 -> 3 epochs (0.75 target epochs); 2 layers 17% of 40 / 2 = 3.4 -> 3
    # (1.5); the target the rest, 40 - 9 = 31 FLOP units -> 7.75 -> 8 epochs
    assert epochs == [3, 3, 8]
    # G_stack repeats the whole stack: blocks 0 1 0 1
    assert stages[2]["rename"]["transformer_layer_1"] == ["transformer_layer_1", "transformer_layer_3"]
    lm = dict(bench.QUICK)  # growstage's own LM: a block is several layers, block{i}_attn ...
    stages, _ = bench.plan_stages(lm, "lm", bench.SCHEDULES["depth/stack"][1], budget,
                                  {lm["depth_small"]: 2.0, lm["target"]: 4.0})
    assert stages[1]["rename"]["block0_attn"] == ["block0_attn", "block1_attn"]
    assert bench.alone_of("progressive/stack") == "alone/one-layer"
    assert bench.alone_of("scratch") is None and bench.alone_of("alone/one-layer") is None


def _rec(name, seed, final, ftm, alone_of=None):
    return {"name": name, "operator": "-", "seed": seed, "final_val_loss": final, "flops_to_match": ftm,
            "jump_at_growth": [], "growth_seconds": []}


def test_growth_pays_only_when_it_beats_scratch_and_its_small_model_alone():
    from lm_growth_report import summarize, table

    recs = [_rec("scratch", s, 2.0, 1.0) for s in (0, 1)]
    recs += [_rec("alone/small", 0, 2.1, None), _rec("alone/small", 1, 1.9, 0.5)]
    recs += [_rec("grow", 0, 1.95, 0.6), _rec("grow", 1, 1.95, 0.6)]  # beats the small model in seed 0 only
    recs += [_rec("slow", 0, 1.8, None), _rec("slow", 1, 1.8, 0.9)]  # never reaches scratch in seed 0
    rows = {r["name"]: r for r in summarize(recs, lambda n: "alone/small" if n in ("grow", "slow") else None)}
    assert rows["grow"]["pays"] == "1 of 2 seeds" and rows["grow"]["beats_alone"] == 1
    assert rows["grow"]["margin_to_alone_min"] == pytest.approx(-0.15)
    assert rows["slow"]["pays"] == "1 of 2 seeds" and rows["slow"]["flops_to_match_mean"] is None
    assert "pays" not in rows["scratch"] and "pays" not in rows["alone/small"]
    assert "| grow |" in table(list(rows.values()))
