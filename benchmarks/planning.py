"""Planning cost for a very deep model (issue 6, goal 5): plan a 2,000-layer model.

A chain of Dense layers (width 8); the source is the same model one unit
narrower, so that every param is resized block-wise (the full planning path).
The chain is built as sub-models of at most 100 layers: Keras walks a functional
graph recursively (``Function._build_map_helper``), and one 2,000-layer graph
exceeds Python's default recursion limit.

    python benchmarks/planning.py [--layers 2000]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import growstage
from growstage.framework.variables import deferred_init


def build(layers: int, width: int, block: int = 100) -> keras.Model:
    """``layers`` Dense layers ``d0..``, chained through sub-models ``block0..`` of ``block`` layers each."""
    x = keras.Input((width,))
    h = x
    for b, start in enumerate(range(0, layers, block)):
        inner = keras.Input((width,))
        g = inner
        for i in range(start, min(start + block, layers)):
            g = keras.layers.Dense(width, name=f"d{i}")(g)
        h = keras.Model(inner, g, name=f"block{b}")(h)
    return keras.Model(x, h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with deferred_init():  # values are not needed to plan
        small, big = build(args.layers, 7), build(args.layers, 8)
    t1 = time.perf_counter()
    snap = growstage.Snapshot({l: {p: growstage.Param(_Shape(prm.shape)) for p, prm in ps.items()}
                               for l, ps in _shapes(small).items()})
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        p = growstage.plan(snap, big, mode="subset")
        best = min(best, time.perf_counter() - t)
    print(f"built two {args.layers}-layer models in {t1 - t0:.1f} s (not timed below)")
    print(f"plan of {len(p.rows)} rows over {args.layers} layers: {best:.3f} s (best of 3); goal < 1 s")


class _Shape:
    """Shape and dtype only: planning never reads a value."""

    def __init__(self, shape):
        self.shape, self.dtype = shape, "float32"

    def read(self):
        raise AssertionError("planning must not read values")


def _shapes(model):
    from growstage.framework.adapters.graph import describe

    return {name: {s.name: s for s in info.params} for name, info in describe(model).items()}


if __name__ == "__main__":
    main()
