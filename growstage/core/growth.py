"""Function-preserving growth: one index map per axis, shared by a param and its optimizer slots.

Every new entry either copies an old entry times a scale, or is fresh.
``preserve``: grown positions are fresh; fresh entries on a *consumer axis*
(an axis that reads units: a layer's input, a recurrent kernel's rows, the
heads of an attention output, the head size of a query) are zero, so old
units never see new ones; fresh entries only on the layer's own axes keep the
target's init.  ``net2net``: grown positions duplicate randomly chosen old
ones (seeded, the same choice wherever a block of that size grows, so a
producer and its consumers agree); on consumer axes each copy is divided by
its copy count.  ``double``: every grown block exactly doubles; when a param
doubles both a consumer axis and an own axis it becomes block-diagonal,
otherwise copies on consumer axes are halved.  ``clone`` (HyperCloning):
every block grows n-fold, new position j copies old position j mod o, so each
unit has exactly n copies (a LayerNorm over cloned units is unchanged); on
consumer axes each copy is divided by n.  ``lemon`` (LEMON's unequal split): as
``clone``, but a unit's copies on a consumer axis get unequal shares that sum
to 1 (seeded), so copies differ from the first step.  Under net2net, clone and
lemon, ``noise`` adds paired noise on consumer axes that sums to zero over each
unit's copies: it cancels on the duplicated inputs.  Which axis is a consumer
comes from the param's roles alone (:data:`~growstage.core.vocab.CONSUMER_ROLES`,
set by the adapters).  A grouped-query heads axis (one block per KV head) grows as a grid: the KV
heads by the KV heads' own map, the heads within a group by theirs, so a copied query head reads
the copy of its KV head.  A normalised residual stream (roles ``stream``, ``stream_input``,
``stream_output``) grows under ``preserve`` with its new units zero and its old ones scaled by
sqrt(new/old), which keeps every RMSNorm's mean square, epsilon included.  Optimizer slots follow the same map: ``slot *
scale**power`` (1 for first moments, 2 for second), fresh entries zero.
numpy only.

Example::

    >>> import numpy as np
    >>> w = np.array([[1.0, 2.0], [3.0, 4.0]])          # Dense kernel (inputs, units)
    >>> g = GrowthMap.build([[2], [2]], [[3], [2]], consumer_axes=(0,), method="net2net", seed=0)
    >>> out = g.apply(w, fresh_value=None)
    >>> bool(np.allclose(out[:2].sum(0) + out[2], w.sum(0)))   # the copy and its original share the row
    True
    >>> GrowthMap.build([[2], [2]], [[4], [4]], consumer_axes=(0,), method="double").apply(w, fresh_value=None)
    array([[1., 2., 0., 0.],
           [3., 4., 0., 0.],
           [0., 0., 1., 2.],
           [0., 0., 3., 4.]])
    >>> GrowthMap.build([[2], [2]], [[4], [4]], consumer_axes=(0,), method="clone").apply(w, fresh_value=None)
    array([[0.5, 1. , 0.5, 1. ],
           [1.5, 2. , 1.5, 2. ],
           [0.5, 1. , 0.5, 1. ],
           [1.5, 2. , 1.5, 2. ]])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from growstage.core.errors import ShapeError
from growstage.core.resize import Split
from growstage.core.vocab import CONSUMER_ROLES, GROUPED_ROLES, PRESERVING, ZERO_FRESH_ROLES, Role
_COPYING = ("net2net", "clone", "lemon")  # duplicate old units, divide on consumer axes, may add noise


@dataclass
class AxisMap:
    """For each new position: the old position it copies (-1: fresh), its copy count, (double) its half,
    and its share of the old unit on a consumer axis (1/count, unequal under lemon)."""

    index: np.ndarray
    count: np.ndarray
    half: np.ndarray
    grew: bool
    share: np.ndarray | None = None


def _block(o: int, n: int, method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= o:
        return np.arange(n), np.zeros(n, np.int64)
    if method == "preserve":
        return np.concatenate([np.arange(o), np.full(n - o, -1)]), np.zeros(n, np.int64)
    if o == 0:
        raise ShapeError(f"fill {method!r} duplicates old units, but a block grows from 0 to {n}")
    if method == "double":
        if n != 2 * o:
            raise ShapeError(f"fill 'double' needs every grown block exactly doubled; a block grows {o} -> {n}")
        return np.concatenate([np.arange(o), np.arange(o)]), np.repeat([0, 1], o)
    if method in ("clone", "lemon"):
        return np.arange(n) % o, np.zeros(n, np.int64)
    rng = np.random.default_rng([seed, o, n])
    return np.concatenate([np.arange(o), rng.integers(0, o, n - o)]), np.zeros(n, np.int64)


def axis_map(old_blocks: Sequence[int], new_blocks: Sequence[int], method: str, seed: int = 0) -> AxisMap:
    idx, half, counts = [], [], []
    o_off = 0
    for o, n in zip(old_blocks, new_blocks):
        i, h = _block(o, n, method, seed)
        c = np.ones(n, np.int64)
        mapped = i >= 0
        if mapped.any():
            c[mapped] = np.bincount(i[mapped], minlength=o)[i[mapped]]
        idx.append(np.where(mapped, i + o_off, -1))
        half.append(h)
        counts.append(c)
        o_off += o
    index, count = np.concatenate(idx), np.concatenate(counts)
    return AxisMap(index, count, np.concatenate(half), any(n > o for o, n in zip(old_blocks, new_blocks)),
                   _shares(index, count, method, seed))


def grouped_axis_map(old_blocks: Sequence[int], new_blocks: Sequence[int], method: str, seed: int = 0) -> AxisMap:
    """A grouped heads axis, ``k`` blocks of ``g`` (old; zero-size blocks pad it to the new count) ->
    ``k'`` blocks of ``g'``: position (kv, i) copies (outer[kv], inner[i]).

    >>> grouped_axis_map([2, 2], [2, 2, 2, 2], "double").index.tolist()
    [0, 1, 2, 3, 0, 1, 2, 3]
    >>> grouped_axis_map([2, 2, 0, 0], [3, 3, 3, 3], "preserve").index.tolist()
    [0, 1, -1, 2, 3, -1, -1, -1, -1, -1, -1, -1]
    """
    real = [b for b in old_blocks if b]
    if len(set(real)) > 1 or len(set(new_blocks)) > 1 or not real:
        raise ShapeError(f"a grouped heads axis needs equal groups; blocks {list(old_blocks)} -> {list(new_blocks)}")
    g, k, g2, k2 = real[0], len(real), new_blocks[0], len(new_blocks)
    outer, inner = axis_map([k], [k2], method, seed), axis_map([g], [g2], method, seed)
    oi, ii = outer.index[:, None], inner.index[None, :]
    index = np.where((oi >= 0) & (ii >= 0), oi * g + ii, -1).reshape(-1)
    count = (outer.count[:, None] * inner.count[None, :]).reshape(-1)
    half = (outer.half[:, None] ^ inner.half[None, :]).reshape(-1)
    return AxisMap(index, count, half, outer.grew or inner.grew, _shares(index, count, method, seed))


def _shares(index: np.ndarray, count: np.ndarray, method: str, seed: int) -> np.ndarray:
    share = 1.0 / count.astype(np.float64)
    if method != "lemon":
        return share
    # unequal shares in [0.5, 1.5] / count, normalised so a unit's copies still sum to the old unit
    w = np.random.default_rng([seed, len(index), 13]).uniform(0.5, 1.5, len(index))
    w[count <= 1] = 1.0
    total = np.zeros(int(index.max()) + 1 if len(index) else 0)
    mapped = index >= 0
    np.add.at(total, index[mapped], w[mapped])
    share[mapped] = w[mapped] / total[index[mapped]]
    return share


def _along(vec: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return vec.reshape(shape)


@dataclass
class GrowthMap:
    """The map of one param: see the module doc.  ``factor`` multiplies every copied entry."""

    axes: list[AxisMap]
    consumer_axes: tuple[int, ...]
    method: str
    factor: float = 1.0
    zero_axes: tuple[int, ...] | None = None  # fresh entries zero (default: the consumer axes)

    @classmethod
    def build(cls, old_split: Split, new_split: Split, *, consumer_axes: Sequence[int], method: str,
              seed: int = 0, factor: float = 1.0, zero_axes: Sequence[int] | None = None,
              grouped_axes: Sequence[int] = ()) -> "GrowthMap":
        axes = [grouped_axis_map(o, n, method, seed) if i in grouped_axes else axis_map(o, n, method, seed)
                for i, (o, n) in enumerate(zip(old_split, new_split))]
        return cls(axes, tuple(consumer_axes), method, factor, None if zero_axes is None else tuple(zero_axes))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.index) for a in self.axes)

    def _scale_and_mask(self) -> tuple[np.ndarray, np.ndarray]:
        nd = len(self.axes)
        scale = np.ones((1,) * nd)
        zero = np.zeros((1,) * nd, bool)
        grown_own = [a for i, a in enumerate(self.axes) if a.grew and i not in self.consumer_axes]
        grown_cons = [i for i in self.consumer_axes if self.axes[i].grew]
        coupled = self.method == "double" and grown_own and grown_cons
        if coupled:
            halves = [_along(a.half, i, nd) for i, a in enumerate(self.axes) if a.grew]
            for h in halves[1:]:
                zero = zero | (h != halves[0])
        elif self.method in _COPYING + ("double",):
            for i in grown_cons:
                scale = scale * _along(self.axes[i].share, i, nd)
        return scale * self.factor, zero

    def fresh_mask(self) -> tuple[np.ndarray, np.ndarray]:
        """(fresh anywhere, fresh on a consumer axis), broadcastable to :attr:`shape`."""
        nd = len(self.axes)
        any_fresh = np.zeros((1,) * nd, bool)
        cons_fresh = np.zeros((1,) * nd, bool)
        zero_axes = self.consumer_axes if self.zero_axes is None else self.zero_axes
        for i, a in enumerate(self.axes):
            f = _along(a.index < 0, i, nd)
            any_fresh = any_fresh | f
            if i in zero_axes:
                cons_fresh = cons_fresh | f
        return any_fresh, cons_fresh

    def plan(self, dtype: Any, *, power: int = 1, fresh: bool = True, noise: float = 0.0,
             seed: int = 0, offset: float = 0.0) -> "GrowthPlan":
        """What :meth:`apply` does, as index arrays and masks (numpy, small): :func:`execute` carries it out
        with numpy or, on a device, with ``jax.numpy`` under ``jit`` (same ops, same bits)."""
        dtype = np.dtype(dtype)
        idx = tuple(np.where(a.index >= 0, a.index, 0) for a in self.axes)
        scale, zero = self._scale_and_mask()
        # the scale in the param's own precision: one rounding per product, the same on every device
        factor = (scale ** power).astype(dtype) if np.any(scale != 1.0) else None
        any_fresh, cons_fresh = self.fresh_mask()
        noisy = None
        if noise and power == 1 and self.method in _COPYING:
            noisy = self._noise_plan(noise, seed)
        # the layer reads value + offset (Gemma's 1 + scale): scales and zeros act on that sum, and only
        # where the scale is not 1 (plain copies keep their bits)
        off = float(offset) if offset and power == 1 else 0.0
        scaled = (scale != 1.0) if off and factor is not None else None
        if not fresh or power != 1:
            return GrowthPlan(idx, factor, any_fresh | zero, None, None, noisy, off, scaled)
        return GrowthPlan(idx, factor, zero, any_fresh, cons_fresh, noisy, off, scaled)

    def apply(self, old: np.ndarray, *, fresh_value: np.ndarray | None, power: int = 1,
              noise: float = 0.0, seed: int = 0, offset: float = 0.0) -> np.ndarray:
        """The new value.  Fresh entries: ``fresh_value`` (the target's init; None for zeros) or zero on
        consumer axes.  ``power`` scales optimizer slots by ``scale**power``; ``noise`` (net2net, clone,
        lemon) splits each divided row among its copies unequally, keeping their sum.  ``offset``: the
        layer reads ``value + offset`` (Gemma's RMSNorm gain ``1 + scale``), so scales and zeros apply to
        that sum; entries that are plain copies move unchanged (no float round trip)."""
        old = np.asarray(old)
        if not old.ndim:
            return old.copy()
        p = self.plan(old.dtype, power=power, fresh=fresh_value is not None, noise=noise, seed=seed, offset=offset)
        return np.ascontiguousarray(execute(p, old, fresh_value, np))

    def _noise_plan(self, noise: float, seed: int) -> "NoisePlan | None":
        axis = next((i for i in self.consumer_axes if self.axes[i].grew), None)
        if axis is None:
            return None
        a = self.axes[axis]
        z = np.random.default_rng([seed, 7]).normal(0.0, noise, self.shape)
        groups = np.where(a.count > 1, a.index, -1)
        uniq = np.unique(groups[groups >= 0])
        member = groups[None, :] == uniq[:, None]  # (copy groups, positions): who shares an old unit
        return NoisePlan(axis, z, member, member.sum(1))


@dataclass
class NoisePlan:
    """Paired noise on one consumer axis: ``z * |value|``, centred within each group of copies."""

    axis: int
    z: np.ndarray
    member: np.ndarray
    sizes: np.ndarray


@dataclass
class GrowthPlan:
    """A :class:`GrowthMap` made concrete for one dtype: per-axis gather indices, the scale in that
    dtype (None: 1), entries forced to zero, and where fresh entries (and zeros among them) go."""

    index: tuple[np.ndarray, ...]
    factor: np.ndarray | None
    zero: np.ndarray
    fresh: np.ndarray | None
    fresh_zero: np.ndarray | None
    noise: NoisePlan | None = None
    offset: float = 0.0
    scaled: np.ndarray | None = None


def execute(p: GrowthPlan, old: Any, fresh_value: Any, xp: Any) -> Any:
    """Carry out ``p`` on ``old`` with the array module ``xp`` (numpy, or jax.numpy inside jit).

    >>> g = GrowthMap.build([[2]], [[4]], consumer_axes=(0,), method="double")
    >>> execute(g.plan("f4"), np.array([2.0, 4.0], "f4"), None, np).tolist()
    [1.0, 2.0, 1.0, 2.0]
    """
    dtype = old.dtype
    out = old[xp.ix_(*p.index)]
    if p.factor is not None and p.scaled is not None:
        off = xp.asarray(p.offset, dtype)
        out = xp.where(xp.asarray(p.scaled), (out + off) * xp.asarray(p.factor) - off, out)
    elif p.factor is not None:
        out = out * xp.asarray(p.factor)
    if p.noise is not None:
        out = _add_noise(p.noise, out, xp)
    zero = xp.asarray(-p.offset if p.offset else 0.0, dtype)  # a zeroed gain (value + offset) is -offset; never -0.0
    if p.fresh is None:
        return xp.where(xp.asarray(p.zero), zero, out)
    fresh = xp.where(xp.asarray(p.fresh_zero), zero, xp.asarray(fresh_value, dtype))
    return xp.where(xp.asarray(p.fresh), fresh, xp.where(xp.asarray(p.zero), zero, out))


def _add_noise(n: NoisePlan, out: Any, xp: Any) -> Any:
    eps = xp.moveaxis(xp.asarray(n.z, out.dtype) * xp.abs(out), n.axis, 0)
    flat = eps.reshape(eps.shape[0], -1)
    m = xp.asarray(n.member, out.dtype)
    mean = (m @ flat) / xp.asarray(n.sizes[:, None], out.dtype)
    # each copy group's mean subtracted: the copies of one old unit still sum to its row
    flat = (flat - m.T @ mean) * xp.asarray(n.member.any(0)[:, None], out.dtype)
    return out + xp.moveaxis(flat.reshape(eps.shape), 0, n.axis)


def consumer_axes(roles: Sequence[str] | None) -> tuple[int, ...]:
    """The axes of a param that read units of some layer (its own previous step included): those whose
    role is one of :data:`~growstage.core.values.CONSUMER_ROLES`.

    >>> consumer_axes(("recurrent", "gates")), consumer_axes(("input", "units")), consumer_axes(None)
    ((0,), (0,), ())
    """
    return tuple(i for i, r in enumerate(roles or ()) if r in CONSUMER_ROLES)


def query_factor(roles: Sequence[str] | None, old_split: Split, new_split: Split) -> float:
    """Attention scales queries by 1/sqrt(head size); a grown head size is undone on the query's old entries.

    >>> query_factor(("input", "heads", "query_head_dim"), [[4], [2], [4]], [[4], [2], [16]])
    2.0
    """
    if not roles or Role.QUERY_HEAD_DIM not in roles:
        return 1.0
    axis = list(roles).index(Role.QUERY_HEAD_DIM)
    return float(np.sqrt(sum(new_split[axis]) / sum(old_split[axis])))


def _ratio(old_split: Split, new_split: Split, axis: int) -> float:
    return sum(new_split[axis]) / sum(old_split[axis])


def stream_factor(roles: Sequence[str] | None, old_split: Split, new_split: Split, method: str) -> float:
    """Under ``preserve`` a normalised stream's old units scale by sqrt(r), r = new/old (its new ones are
    zero, so its mean square is unchanged and an RMSNorm's output grows by sqrt(r)); a norm's gain undoes
    that, the last norm before a tied output also the embedding's sqrt(r).

    >>> stream_factor(("vocab", "stream"), [[8], [4]], [[8], [16]], "preserve")
    2.0
    >>> [stream_factor((r,), [[4]], [[16]], "preserve") for r in ("stream_gain", "stream_output")]
    [0.5, 0.25]
    >>> stream_factor(("stream",), [[4]], [[8]], "double")
    1.0
    """
    if method != "preserve" or not roles:
        return 1.0
    powers = {Role.STREAM: 0.5, Role.STREAM_GAIN: -0.5, Role.STREAM_OUTPUT: -1.0}
    out = 1.0
    for axis, role in enumerate(roles):
        if role in powers:
            out *= float(_ratio(old_split, new_split, axis) ** powers[role])
    return out


def size_factor(size_power: tuple[int, float] | None, old_split: Split, new_split: Split) -> float:
    """A layer that multiplies a param's output by (size of axis) ** power (Gemma: embeddings times
    sqrt(hidden)) gets the inverse change on the copied entries: (old/new) ** power.

    >>> size_factor((1, 0.5), [[8], [4]], [[8], [16]])
    0.5
    """
    if size_power is None:
        return 1.0
    axis, power = size_power
    return float(_ratio(old_split, new_split, axis) ** -power)


def grouped_split(old_split: Split, new_split: Split, roles: Sequence[str] | None) -> Split:
    """``old_split`` with zero-size blocks appended on grouped heads axes that gain KV heads, so a block-wise
    copy puts each old group into the group of the same KV head (and the new groups are new).

    >>> grouped_split([[8], [2, 2]], [[8], [2, 2, 2, 2]], ("input", "grouped_heads"))
    [[8], [2, 2, 0, 0]]
    """
    out = [list(b) for b in old_split]
    for axis, role in enumerate(roles or ()):
        if role in GROUPED_ROLES and axis < len(out) and len(out[axis]) < len(new_split[axis]):
            out[axis] += [0] * (len(new_split[axis]) - len(out[axis]))
    return out


def for_row(row, roles: Sequence[str] | None, fill, seed: int = 0,
            size_power: tuple[int, float] | None = None) -> GrowthMap | None:
    """The map of a padded plan row under a function-preserving ``fill``; None for the plain fills.
    ``size_power``: see :func:`size_factor` (an adapter's ``ParamSpec.size_power``)."""
    if row.action != "padded" or not (isinstance(fill, str) and fill in PRESERVING):
        return None
    o, n = row.old_split, row.new_split
    factor = query_factor(roles, o, n) * stream_factor(roles, o, n, fill) * size_factor(size_power, o, n)
    return GrowthMap.build(o, n, consumer_axes=consumer_axes(roles), method=fill, seed=seed, factor=factor,
                           zero_axes=tuple(i for i, r in enumerate(roles or ()) if r in ZERO_FRESH_ROLES),
                           grouped_axes=tuple(i for i, r in enumerate(roles or ()) if r in GROUPED_ROLES))
