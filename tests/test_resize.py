import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from growstage import ShapeError, derive_split, resize
from growstage.core.resize import covered_mask

from conftest import expected_blockwise


def test_lstm_gates_grow_per_block():
    n_in, n, m = 3, 2, 3
    old = np.arange(n_in * 4 * n).reshape(n_in, 4 * n)
    new = resize(old, (n_in, 4 * m), old_split=[[n_in], [n] * 4], new_split=[[n_in], [m] * 4], fill=-1)
    for g in range(4):
        assert np.array_equal(new[:, g * m:g * m + n], old[:, g * n:(g + 1) * n])
        assert np.all(new[:, g * m + n:(g + 1) * m] == -1)


def test_fill_array_keeps_uncovered_entries_and_is_not_modified():
    init = np.random.default_rng(0).normal(size=(4, 6)).astype("f4")
    before = init.copy()
    old = np.ones((2, 4), "f4")
    new = resize(old, (4, 6), old_split=[[2], [2, 2]], new_split=[[4], [3, 3]], fill=init)
    exp, _ = expected_blockwise(old, init, [[2], [2, 2]], [[4], [3, 3]])
    assert np.array_equal(new, exp)
    assert np.array_equal(init, before)


def test_blocks_may_vanish_and_appear():
    old = np.arange(6)
    new = resize(old, (5,), old_split=[[2, 0, 4]], new_split=[[0, 3, 2]], fill=9)
    assert np.array_equal(new, [9, 9, 9, 2, 3])


def test_derive_split_like_returnn():
    a, b = 5, 2
    assert derive_split([[a], [b] * 4], (a * 2, b * 8)) == [[a * 2], [b * 2] * 4]
    assert derive_split([[a + b], [b] * 4], (a + b * 2, b * 8)) == [[a + b * 2], [b * 2] * 4]
    assert derive_split([[4, 4], [16]], (12, 24)) == [[6, 6], [24]]
    assert derive_split([[4, 2], [16]], (9, 24)) == [[4, 5], [24]]


def test_only_new_split_given_derives_old():
    old = np.arange(8).reshape(1, 8)
    new = resize(old, (1, 12), new_split=[[1], [3, 3, 3, 3]], fill=0)
    assert np.array_equal(new[0, ::3], [0, 2, 4, 6])


def test_errors_name_the_problem():
    with pytest.raises(ShapeError, match="does not add up"):
        resize(np.zeros((4,)), (6,), old_split=[[2, 3]], new_split=[[3, 3]])
    with pytest.raises(ShapeError, match="same number of blocks"):
        resize(np.zeros((4,)), (6,), old_split=[[2, 2]], new_split=[[6]])
    with pytest.raises(ShapeError, match="number of axes"):
        resize(np.zeros((4,)), (6, 1))


def test_exact_bits_for_every_dtype():
    for dt in ("f2", "f4", "f8", "i4", "u1", "bool"):
        old = (np.random.default_rng(1).normal(size=(3, 4)) * 100).astype(dt)
        new = resize(old, (5, 2), fill=0)
        assert new.dtype == old.dtype
        assert np.array_equal(new[:3], old[:, :2])


parts_st = st.lists(st.integers(0, 4), min_size=1, max_size=4)


@st.composite
def split_pair(draw):
    ndim = draw(st.integers(1, 3))
    old, new = [], []
    for _ in range(ndim):
        o = draw(parts_st)
        n = [draw(st.integers(0, 4)) for _ in o]
        old.append(o)
        new.append(n)
    return old, new


@settings(max_examples=150, deadline=None)
@given(split_pair())
def test_grow_then_shrink_returns_original(splits):
    old_split, new_split = splits
    big_split = [[max(a, b) for a, b in zip(o, n)] for o, n in zip(old_split, new_split)]
    shape = tuple(sum(p) for p in old_split)
    x = np.random.default_rng(0).integers(-1000, 1000, size=shape)
    big = resize(x, [sum(p) for p in big_split], old_split=old_split, new_split=big_split, fill=7)
    back = resize(big, shape, old_split=big_split, new_split=old_split, fill=0)
    assert np.array_equal(back, x)


@settings(max_examples=150, deadline=None)
@given(split_pair())
def test_each_block_leading_slice_lands_at_block_start(splits):
    old_split, new_split = splits
    shape = tuple(sum(p) for p in old_split)
    new_shape = tuple(sum(p) for p in new_split)
    x = np.random.default_rng(1).normal(size=shape)
    init = np.random.default_rng(2).normal(size=new_shape)
    got = resize(x, new_shape, old_split=old_split, new_split=new_split, fill=init)
    exp, covered = expected_blockwise(x, init, old_split, new_split)
    assert np.array_equal(got, exp)
    assert np.array_equal(covered_mask(old_split, new_split), covered)
