"""The ``init-blocks`` fill: new entries follow the initializer's distribution (full-shape fans),
copied entries stay bit-identical, and the draws are seeded."""
import keras
import numpy as np
import pytest

import growstage
from conftest import build_blstm
from growstage.core.init_blocks import grow_with_blocks, new_mask
from growstage.framework.init_spec import init_spec

INITS = {
    "glorot_uniform": keras.initializers.GlorotUniform(seed=3),
    "he_normal": keras.initializers.HeNormal(seed=3),
    "orthogonal": keras.initializers.Orthogonal(seed=3),
}


def test_fans_over_explicit_axes_as_in_attention():
    # MultiHeadAttention's EinsumDense kernels: fans from the given axes, not from the shape
    init = keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform", seed=3, input_axes=(0,),
                                              output_axes=(1, 2))
    new_shape = (256, 8, 96)
    fresh = np.asarray(keras.ops.convert_to_numpy(init(new_shape)), np.float64)
    old = np.zeros((128, 8, 64), np.float32)
    grown = grow_with_blocks(old, new_shape, init_spec(init), seed=0).astype(np.float64)
    new = grown[new_mask(old.shape, new_shape)]
    assert abs(new.std() / fresh.std() - 1) < 0.03


@pytest.mark.parametrize("name", sorted(INITS))
def test_new_entries_match_fresh_init_statistics(name):
    init = INITS[name]
    new_shape = (256, 512)
    fresh = np.asarray(keras.ops.convert_to_numpy(init(new_shape)), np.float64)
    old = np.full((32, 64), 7.0, np.float32)  # a value no draw is near: the copied block is visible
    grown = grow_with_blocks(old, new_shape, init_spec(init), seed=0).astype(np.float64)
    new = grown[new_mask(old.shape, new_shape)]
    assert new.size == 256 * 512 - 32 * 64
    assert abs(new.mean() - fresh.mean()) < 0.05 * fresh.std()
    assert abs(new.std() / fresh.std() - 1) < 0.03
    assert np.array_equal(grown[:32, :64], old)


def test_blocks_are_per_gate():
    # a (2, 4 gates x 1 unit) kernel grown to 2 units per gate: old values land at each gate's start
    spec = init_spec(keras.initializers.GlorotUniform())
    old = np.arange(8, dtype=np.float32).reshape(2, 4) + 100
    new = grow_with_blocks(old, (2, 8), spec, seed=1, old_split=[[2], [1] * 4], new_split=[[2], [2] * 4])
    assert np.array_equal(new[:, ::2], old)
    assert np.all(np.abs(new[:, 1::2]) < 10)


def _rebuild(fill, seed=0):
    small = build_blstm(8, depth=2, seed=1)
    model, report = growstage.rebuild(lambda: build_blstm(16, depth=2, seed=2), small, mode="subset",
                                      fill=fill, fill_seed=seed)
    return small, model, report


def test_copied_entries_identical_only_new_change_and_seeded():
    _, zeros, _ = _rebuild("zeros")
    _, a, report = _rebuild("init-blocks")
    if keras.backend.backend() == "torch":
        # rebuild builds normally on PyTorch, so no initializer is left to draw from: init, said per param
        notes = [n for n in report.notes if "init-blocks" in n]
        assert notes and all("fell back to init" in n for n in notes)
        return
    _, b, _ = _rebuild("init-blocks")
    _, c, _ = _rebuild("init-blocks", seed=5)
    za, wa, wb, wc = zeros.get_weights(), a.get_weights(), b.get_weights(), c.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))  # same seed: same draws
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))  # another seed: other draws
    moved = 0
    for z, w in zip(za, wa):
        changed = z != w
        # every change is in an entry the zero fill left at 0 (a new one), never in a copied entry
        assert np.array_equal(np.where(changed, z, 0), np.zeros_like(z))
        moved += int(changed.sum())
    assert moved > 0
    drawn = [n for n in report.notes if "init-blocks" in n and "drawn" in n]
    assert any("recurrent_kernel" in n and "orthogonal" in n for n in drawn)


def test_init_stays_bit_identical_to_fresh_build():
    _, model, _ = _rebuild("init")
    fresh = build_blstm(16, depth=2, seed=2)
    small = build_blstm(8, depth=2, seed=1)
    growstage.transfer(small, fresh, mode="subset", fill="init")
    assert all(np.array_equal(x, y) for x, y in zip(model.get_weights(), fresh.get_weights()))
