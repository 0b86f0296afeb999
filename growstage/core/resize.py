"""Block-wise copy / slice / pad of numpy arrays: the exact core of growstage.

An axis may be made of blocks (the four gates of an LSTM, the forward and
backward halves of a BLSTM output).  Resizing moves block k of the old axis to
the start of block k of the new axis, truncated or padded to the new block
size, independently per axis.  Only bits move; nothing is computed.

This module imports numpy only.

Example::

    >>> import numpy as np
    >>> old = np.arange(8).reshape(1, 8)            # 2 blocks of 4 along axis 1
    >>> resize(old, (1, 6), old_split=[[1], [4, 4]], new_split=[[1], [3, 3]])
    array([[0, 1, 2, 4, 5, 6]])
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence, Union

import numpy as np

from growstage.core.errors import ShapeError

Split = list[list[int]]
Fill = Union[int, float, np.ndarray, Callable[[tuple[int, ...], np.dtype], np.ndarray]]


def _check_split(split: Sequence[Sequence[int]], shape: Sequence[int], what: str) -> Split:
    if len(split) != len(shape):
        raise ShapeError(f"{what} split info {list(split)} has {len(split)} axes, the array has {len(shape)} (shape {tuple(shape)})")
    out = []
    for axis, (parts, dim) in enumerate(zip(split, shape)):
        parts = [int(p) for p in parts]
        if not parts or any(p < 0 for p in parts) or sum(parts) != dim:
            raise ShapeError(f"{what} split info of axis {axis} is {parts}, which does not add up to its size {dim}")
        out.append(parts)
    return out


def whole_split(shape: Sequence[int]) -> Split:
    """The trivial split info: every axis is one block."""
    return [[int(d)] for d in shape]


def derive_split(old_split: Sequence[Sequence[int]], new_shape: Sequence[int]) -> Split:
    """Guess the split info of ``new_shape`` from one of another shape.

    Same rules as RETURNN's ``transform_param_axes_split_info_to_new_shape``:
    a one-block axis takes the new size; equal blocks divide the new size
    evenly; otherwise block sizes are mapped through the sizes of the other
    axes, and the remaining unknown block takes what is left.  Used when only
    one side's split is known (a foreign checkpoint).  The old side may be
    derived from the new one by calling it the other way round.

    Example::

        >>> derive_split([[5], [4, 4, 4, 4]], (5, 24))
        [[5], [6, 6, 6, 6]]
        >>> derive_split([[7], [2, 3]], (7, 9))   # [fw, bw] input grown: last block absorbs the rest
        [[7], [2, 7]]
    """
    if len(old_split) != len(new_shape):
        raise ShapeError(f"split info {list(old_split)} has {len(old_split)} axes, the new shape {tuple(new_shape)} has {len(new_shape)}")
    dim_map: dict[int, int] = {}
    for new_dim, parts in zip(new_shape, old_split):
        if len(parts) == 1:
            dim_map[parts[0]] = int(new_dim)
        elif len(set(parts)) == 1 and new_dim % len(parts) == 0:
            dim_map[parts[0]] = int(new_dim) // len(parts)
    result: Split = []
    for new_dim, parts in zip(new_shape, old_split):
        new_dim = int(new_dim)
        if len(parts) == 1:
            result.append([new_dim])
            continue
        new_parts = [dim_map.get(p) for p in parts]
        if None in new_parts:
            # Several unknown blocks: keep all but the last unknown at their old size.
            unknown = [j for j, p in enumerate(new_parts) if p is None]
            for j in unknown[:-1]:
                new_parts[j] = parts[j]
            j = unknown[-1]
            new_parts[j] = new_dim - sum(p for p in new_parts if p is not None)
        elif sum(new_parts) != new_dim:
            new_parts[0] = new_dim - sum(new_parts[1:])
        if any(p < 0 for p in new_parts) or sum(new_parts) != new_dim:
            raise ShapeError(f"cannot derive the split of an axis of size {new_dim} from blocks {list(parts)}; give the split explicitly")
        result.append([int(p) for p in new_parts])
    return result


def _offsets(parts: Sequence[int]) -> list[int]:
    out, acc = [], 0
    for p in parts:
        out.append(acc)
        acc += p
    return out


def _make_base(new_shape: tuple[int, ...], dtype: np.dtype, fill: Fill) -> np.ndarray:
    if callable(fill):
        base = np.asarray(fill(new_shape, dtype))
        if base.shape != new_shape:
            raise ShapeError(f"fill callable returned shape {base.shape}, expected {new_shape}")
        return base.astype(dtype, copy=False)
    if isinstance(fill, np.ndarray) or (hasattr(fill, "shape") and hasattr(fill, "__array__")):
        base = np.array(fill, dtype=dtype, copy=True)
        if base.shape != new_shape:
            raise ShapeError(f"fill array has shape {base.shape}, expected the new shape {new_shape}")
        return base
    return np.full(new_shape, fill, dtype=dtype)


def block_slices(old_split: Split, new_split: Split):
    """Yield ``(old_index, new_index)`` tuples of slices, one pair per block combination.

    Adjacent blocks that are unchanged along an axis are merged, so a plain
    (one-block) resize yields a single pair.
    """
    per_axis = []
    for old_parts, new_parts in zip(old_split, new_split):
        pairs = []
        for o_off, n_off, o, n in zip(_offsets(old_parts), _offsets(new_parts), old_parts, new_parts):
            m = min(o, n)
            if m == 0:
                continue
            if pairs and o == n and pairs[-1][2] and pairs[-1][0].stop == o_off and pairs[-1][1].stop == n_off:
                prev = pairs.pop()
                pairs.append((slice(prev[0].start, o_off + m), slice(prev[1].start, n_off + m), True))
            else:
                pairs.append((slice(o_off, o_off + m), slice(n_off, n_off + m), o == n))
        per_axis.append(pairs)
    for combo in itertools.product(*per_axis):
        yield tuple(c[0] for c in combo), tuple(c[1] for c in combo)


def resize(
    old: np.ndarray,
    new_shape: Sequence[int],
    *,
    old_split: Sequence[Sequence[int]] | None = None,
    new_split: Sequence[Sequence[int]] | None = None,
    fill: Fill = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Copy ``old`` block-wise into an array of ``new_shape``.

    ``old_split``/``new_split`` give, per axis, the block sizes (default: one
    block per axis).  If only one of them is given the other is derived with
    :func:`derive_split`.  ``fill`` decides what the uncovered entries hold: a
    scalar, an array of the new shape (usually the target's fresh init), or a
    callable ``(shape, dtype) -> array``.  ``out``, if given, is written in
    place and must already hold the fill.

    Example::

        >>> import numpy as np
        >>> resize(np.ones((2, 2)), (3, 1), fill=-1)
        array([[ 1.],
               [ 1.],
               [-1.]])
    """
    old = np.asarray(old)
    new_shape = tuple(int(d) for d in new_shape)
    if len(new_shape) != old.ndim:
        raise ShapeError(f"cannot resize an array of shape {old.shape} to {new_shape}: the number of axes differs")
    if old_split is None and new_split is None:
        old_split, new_split = whole_split(old.shape), whole_split(new_shape)
    elif old_split is None:
        new_split = _check_split(new_split, new_shape, "new")
        old_split = derive_split(new_split, old.shape)
    elif new_split is None:
        old_split = _check_split(old_split, old.shape, "old")
        new_split = derive_split(old_split, new_shape)
    old_split = _check_split(old_split, old.shape, "old")
    new_split = _check_split(new_split, new_shape, "new")
    for axis, (o, n) in enumerate(zip(old_split, new_split)):
        if len(o) != len(n):
            raise ShapeError(f"axis {axis}: the old array has {len(o)} blocks {o}, the new one {len(n)} blocks {n}; block-wise copy needs the same number of blocks")
    if out is None:
        if old_split == new_split:
            return old.copy()
        out = _make_base(new_shape, old.dtype, fill)
    elif out.shape != new_shape:
        raise ShapeError(f"out has shape {out.shape}, expected {new_shape}")
    for o_idx, n_idx in block_slices(old_split, new_split):
        out[n_idx] = old[o_idx]
    return out


def covered_mask(old_split: Split, new_split: Split) -> np.ndarray:
    """Boolean mask of the new shape: True where a value comes from the old array."""
    shape = tuple(sum(p) for p in new_split)
    mask = np.zeros(shape, dtype=bool)
    for _, n_idx in block_slices(old_split, new_split):
        mask[n_idx] = True
    return mask
