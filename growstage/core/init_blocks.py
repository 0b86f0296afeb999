"""The ``init-blocks`` fill: draw only the new entries of a grown param from its initializer's
distribution, instead of running the whole initializer (a full QR for an orthogonal kernel) to
fill a few new rows.

What is exact and what is "same distribution":

* copied entries are bit-identical to the source (they go through :func:`resize` like any fill);
* new entries are NOT bit-identical to a fresh build's init (that is ``fill="init"``); they are
  drawn from the same distribution, with fans computed from the FULL new shape (as Keras does),
  so mean and variance match a fresh init of the new shape;
* variance-scaling (glorot / he / lecun, normal, truncated or uniform) and random normal /
  uniform / truncated normal / constant initializers: each new entry has exactly the marginal
  distribution of a fresh init's entry;
* orthogonal: new entries are normal with the variance of an entry of a scaled orthogonal
  matrix of the full (flattened) shape, ``gain**2 / max(rows, cols)``.  The matrix as a whole is
  not orthogonal any more; only the first two moments match.

Draws are seeded (``seed``), so the same call gives the same values.

Example::

    >>> import numpy as np
    >>> spec = InitSpec("variance_scaling", scale=1.0, mode="fan_avg", distribution="uniform")
    >>> new = grow_with_blocks(np.ones((2, 2), "f4"), (3, 2), spec, seed=0)
    >>> bool(np.array_equal(new[:2], np.ones((2, 2)))), new.shape
    (True, (3, 2))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from growstage.core.resize import resize

KINDS = ("variance_scaling", "normal", "truncated_normal", "uniform", "constant", "orthogonal")


@dataclass(frozen=True)
class InitSpec:
    """An initializer described by numbers alone (core knows no framework).

    ``kind`` is one of :data:`KINDS`; the other fields are the initializer's parameters
    (``scale``/``mode``/``distribution`` for variance scaling, ``mean``/``stddev`` for
    normals, ``minval``/``maxval`` for uniform, ``value`` for constant, ``gain`` for orthogonal).

    Example::

        >>> InitSpec("orthogonal", gain=2.0).gain
        2.0
    """

    kind: str
    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"
    mean: float = 0.0
    stddev: float = 0.05
    minval: float = -0.05
    maxval: float = 0.05
    value: float = 0.0
    gain: float = 1.0
    # variance scaling over explicit axes (Keras's EinsumDense in MultiHeadAttention): fans are the
    # products of these axes' sizes instead of the shape-based fans
    input_axes: tuple[int, ...] | None = None
    output_axes: tuple[int, ...] | None = None


def compute_fans(shape: Sequence[int], input_axes: Sequence[int] | None = None,
                 output_axes: Sequence[int] | None = None) -> tuple[float, float]:
    """Keras's fans: the last axis is fan-out, the one before fan-in, the rest a receptive field.

    Example::

        >>> compute_fans((3, 3, 8, 16))
        (72.0, 144.0)
    """
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return float(math.prod(shape[a] for a in input_axes)), float(math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _truncated(rng: np.random.Generator, n: int, mean: float, std: float, dtype: Any) -> np.ndarray:
    # Keras truncates at two standard deviations: redraw what falls outside
    out = rng.standard_normal(n, dtype=dtype)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()), dtype=dtype)
        bad = np.abs(out) > 2
    return mean + std * out


def _uniform(rng: np.random.Generator, n: int, low: float, high: float, dtype: Any) -> np.ndarray:
    out = rng.random(n, dtype=dtype)
    out *= high - low
    out += low
    return out


def entry_distribution(spec: InitSpec, full_shape: Sequence[int]) -> tuple[str, float, float]:
    """The distribution of one entry of a fresh init of ``full_shape``: ``("normal", mean, std)``,
    ``("truncated", mean, std)`` (cut at two std), ``("uniform", low, high)`` or ``("constant", value, 0)``.
    The same numbers whoever draws (numpy here, a device backend for sharded params).

    Example::

        >>> entry_distribution(InitSpec("uniform", minval=-1.0, maxval=1.0), (2, 2))
        ('uniform', -1.0, 1.0)
    """
    if spec.kind == "constant":
        return "constant", spec.value, 0.0
    if spec.kind == "normal":
        return "normal", spec.mean, spec.stddev
    if spec.kind == "truncated_normal":
        return "truncated", spec.mean, spec.stddev
    if spec.kind == "uniform":
        return "uniform", spec.minval, spec.maxval
    if spec.kind == "orthogonal":
        shape = tuple(full_shape)
        rows, cols = (math.prod(shape[:-1]), shape[-1]) if len(shape) > 1 else (1, shape[0] if shape else 1)
        return "normal", 0.0, spec.gain / math.sqrt(max(rows, cols, 1))
    if spec.kind == "variance_scaling":
        fan_in, fan_out = compute_fans(full_shape, spec.input_axes, spec.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out}.get(spec.mode, (fan_in + fan_out) / 2)
        var = spec.scale / max(1.0, fan)
        if spec.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return "uniform", -limit, limit
        if spec.distribution == "untruncated_normal":
            return "normal", 0.0, math.sqrt(var)
        # 0.879... is the std of a unit normal truncated at 2 std (Keras's constant)
        return "truncated", 0.0, math.sqrt(var) / 0.87962566103423978
    raise ValueError(f"unknown initializer kind {spec.kind!r} (known: {', '.join(KINDS)})")


def sample(spec: InitSpec, full_shape: Sequence[int], n: int, seed: int, dtype: Any = np.float64) -> np.ndarray:
    """``n`` draws from ``spec``'s entry distribution for a param of ``full_shape``; ``dtype``
    float32 or float64 (drawn in that precision: no conversion pass).

    Example::

        >>> sample(InitSpec("constant", value=2.0), (4,), 3, seed=0)
        array([2., 2., 2.])
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    kind, a, b = entry_distribution(spec, full_shape)
    if kind == "constant":
        return np.full(n, a, dtype)
    if kind == "uniform":
        return _uniform(rng, n, a, b, dtype)
    if kind == "truncated":
        return _truncated(rng, n, a, b, dtype)
    if spec.kind == "normal":
        return a + b * rng.standard_normal(n, dtype=dtype)
    return dtype.type(b) * rng.standard_normal(n, dtype=dtype)  # zero-mean normals (orthogonal, untruncated)


def new_mask(old_shape: Sequence[int], new_shape: Sequence[int], *, old_split=None, new_split=None) -> np.ndarray:
    """Boolean array of ``new_shape``: True where :func:`resize` writes no source entry (the new ones).

    Example::

        >>> new_mask((1, 2), (2, 2)).tolist()
        [[False, False], [True, True]]
    """
    copied = resize(np.ones(tuple(old_shape), bool), tuple(new_shape), old_split=old_split,
                    new_split=new_split, fill=False)
    return ~copied


def grow_with_blocks(old: np.ndarray, new_shape: Sequence[int], spec: InitSpec, *, seed: int,
                     old_split=None, new_split=None) -> np.ndarray:
    """``old`` resized block-wise to ``new_shape``; only the new entries are drawn from ``spec``
    (with the full new shape's fans).  Copied entries are bit-identical to ``old``."""
    new_shape = tuple(int(d) for d in new_shape)
    # one draw per entry of the new shape, then the old blocks written over it in place: the
    # draws of copied entries are wasted, but that is cheaper than selecting the new ones by a mask
    draw = old.dtype if old.dtype in (np.float32, np.float64) else np.float64
    out = sample(spec, new_shape, math.prod(new_shape), seed, draw).astype(old.dtype, copy=False)
    out = out.reshape(new_shape)
    return resize(old, new_shape, old_split=old_split, new_split=new_split, out=out)
