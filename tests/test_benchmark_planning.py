"""benchmarks/planning.py builds its very deep model within Python's recursion limit (issue 12, item 8)."""
import importlib.util
import sys
from pathlib import Path

import growstage

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_planning", ROOT / "benchmarks" / "planning.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_deep_chain_builds_under_a_low_recursion_limit_and_plans():
    bench = _bench()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(__import__("inspect").stack()) + 350)  # a single 300-layer graph needs more
    try:
        small, big = bench.build(300, 3), bench.build(300, 4)
    finally:
        sys.setrecursionlimit(limit)
    p = growstage.plan(small, big, mode="subset")
    assert len(p.rows) == 600 and {r.action for r in p.rows} == {"padded"}
    assert p.rows[0].target == "block0/d0/kernel" and p.rows[-1].target == "block2/d299/bias"
