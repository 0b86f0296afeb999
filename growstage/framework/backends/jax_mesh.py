"""JAX arrays laid out over a ``keras.distribution`` mesh: new values computed where the old ones live.

Every kernel here runs under ``jax.jit`` with ``out_shardings`` set to the target variable's layout, so
each device computes its own shard of the new value from the old value's shards: nothing is read to
the host, and nothing is laid out by an eager ``device_put`` (which reads through the host).  The
index plans (which old entry goes where, scales, masks) come from :mod:`growstage.core`; this module
only executes them with ``jax.numpy``.

Example::

    >>> import numpy as np, jax
    >>> s = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    >>> old = jax.numpy.arange(4.0).reshape(1, 4)
    >>> blocks_old, blocks_new = [((0, 1), (0, 2)), ((0, 1), (2, 4))], [((0, 1), (0, 2)), ((0, 1), (3, 5))]
    >>> out = resize(old, (1, 6), blocks_old, blocks_new, -1.0, s)
    >>> np.asarray(out).tolist()
    [[0.0, 1.0, -1.0, 2.0, 3.0, -1.0]]
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator, Sequence

import numpy as np


def target_sharding(variable: Any) -> Any | None:
    """The sharding ``variable`` gets (its layout, or the active distribution's layout for it); None
    without a distribution."""
    layout = getattr(variable, "_layout", None)
    if layout is None:
        from keras.distribution import distribution

        if distribution() is None or getattr(variable, "_value", None) is not None:
            return None  # no distribution, or a variable made without one: it keeps its place
        if hasattr(variable, "_initialize_layout"):
            variable._initialize_layout()
        layout = getattr(variable, "_layout", None)
        if layout is None:
            return None
    return getattr(layout, "backend_layout", layout)


def prepare_layout(variable: Any) -> None:
    """Give a variable created without a value its layout now (optimizer slots copy it from their param)."""
    if getattr(variable, "_layout", None) is None and hasattr(variable, "_initialize_layout"):
        from keras.distribution import distribution

        if distribution() is not None:
            variable._initialize_layout()


def _same_devices(x: Any, sharding: Any) -> bool:
    return set(x.sharding.device_set) == set(sharding.device_set)


def _onto(x: Any, sharding: Any) -> Any:
    """``x`` on the devices of ``sharding`` (a jit needs its inputs and outputs on one device set)."""
    import jax

    if _same_devices(x, sharding):
        return x
    # another device set (a mesh of fewer devices): a device-to-device copy, replicated on the new mesh
    return jax.device_put(x, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()))


@functools.lru_cache(maxsize=256)
def _relayout_fn(sharding: Any) -> Any:
    import jax

    return jax.jit(lambda x: x, out_shardings=sharding)


def relayout(x: Any, sharding: Any) -> Any:
    """``x`` laid out as ``sharding``, resharded on the devices (as is when it already is)."""
    if x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    return _relayout_fn(sharding)(_onto(x, sharding))


def _to_slices(pairs: Sequence[tuple[int, int]]) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in pairs)


@functools.lru_cache(maxsize=256)
def _resize_fn(sharding: Any, shape: tuple[int, ...], dtype: str, blocks: tuple, base: str, draw: tuple) -> Any:
    import jax
    import jax.numpy as jnp

    def run(old: Any, fill: Any, key: Any) -> Any:
        if base == "scalar":
            out = jnp.full(shape, fill, dtype)
        elif base == "draw":
            out = _draw(key, draw, shape, dtype)
        else:
            out = jnp.asarray(fill, dtype)
        for o_idx, n_idx in blocks:
            out = out.at[_to_slices(n_idx)].set(old[_to_slices(o_idx)].astype(dtype))
        return out

    return jax.jit(run, out_shardings=sharding)


def _draw(key: Any, dist: tuple, shape: tuple[int, ...], dtype: str) -> Any:
    import jax
    import jax.numpy as jnp

    kind, a, b = dist
    if kind == "constant":
        return jnp.full(shape, a, dtype)
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype, a, b)
    if kind == "truncated":
        return (a + b * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)).astype(dtype)
    return (a + b * jax.random.normal(key, shape, dtype)).astype(dtype)


def resize(old: Any, shape: Sequence[int], old_blocks: Any, new_blocks: Any, fill: Any, sharding: Any, *,
           dtype: Any = None, draw: tuple | None = None, seed: int = 0) -> Any:
    """``old`` copied block-wise into a new array of ``shape`` laid out as ``sharding``.

    ``old_blocks``/``new_blocks``: per block, ``((start, stop), ...)`` per axis (from
    :func:`growstage.core.resize.block_slices`); ``fill``: a scalar or an array of ``shape`` (numpy
    or on the devices); ``draw``: ``(kind, a, b)`` of :func:`growstage.core.init_blocks.entry_distribution`
    to draw the uncovered entries on the devices instead (seeded by ``seed``).
    """
    import jax
    import jax.numpy as jnp

    dtype = np.dtype(dtype or old.dtype).name
    shape = tuple(int(d) for d in shape)
    blocks = tuple(zip((tuple(b) for b in old_blocks), (tuple(b) for b in new_blocks)))
    if draw is not None:
        base, fill = "draw", 0
    elif np.ndim(fill) == 0 and not isinstance(fill, jax.Array):
        base = "scalar"
    else:
        base = "array"
        fill = _onto(fill, sharding) if isinstance(fill, jax.Array) else jnp.asarray(np.asarray(fill, dtype))
    key = jax.random.key(int(seed) % 2**32)
    fn = _resize_fn(sharding, shape, dtype, blocks, base, tuple(draw) if draw else ())
    return fn(_onto(old, sharding), fill, key)


@functools.lru_cache(maxsize=256)
def _grow_fn(sharding: Any, noise_axis: int | None) -> Any:
    import jax
    import jax.numpy as jnp

    from growstage.core.growth import GrowthPlan, NoisePlan, execute

    def run(old: Any, fresh: Any, parts: dict, noise: dict | None) -> Any:
        n = NoisePlan(noise_axis, **noise) if noise is not None else None
        return execute(GrowthPlan(**parts, noise=n), old, fresh, jnp)

    return jax.jit(run, out_shardings=sharding)


def grow(plan: Any, old: Any, fresh: Any, sharding: Any) -> Any:
    """A :class:`growstage.core.growth.GrowthPlan` carried out on the devices (gather, scale, masks)."""
    parts = {k: getattr(plan, k) for k in ("index", "factor", "zero", "fresh", "fresh_zero")}
    n = plan.noise
    noise = None if n is None else {"z": n.z, "member": n.member, "sizes": n.sizes}
    fresh = _onto(fresh, sharding) if fresh is not None and hasattr(fresh, "sharding") else fresh
    return _grow_fn(sharding, None if n is None else n.axis)(_onto(old, sharding), fresh, parts, noise)


@functools.lru_cache(maxsize=1)
def _finite_fn() -> Any:
    import jax
    import jax.numpy as jnp

    # one reduction, as the numpy path: a finite sum means no NaN/Inf (an overflow only costs the exact count)
    return jax.jit(lambda x: jnp.isfinite(jnp.sum(x, dtype=jnp.float32)))


def all_finite(x: Any) -> bool:
    """Whether every entry is finite, computed on the devices (one boolean comes back)."""
    import jax.numpy as jnp

    if not jnp.issubdtype(x.dtype, jnp.floating):
        return True
    return bool(_finite_fn()(x))


def shards(x: Any) -> list[tuple[tuple[tuple[int, int], ...], int, Any]]:
    """One ``(index, device id, read)`` per distinct shard of ``x`` (replicas left out): ``read()``
    copies that device's shard, and only it, to host memory."""
    out = []
    for s in x.addressable_shards:
        if s.replica_id != 0:
            continue
        index = tuple((sl.start or 0, dim if sl.stop is None else sl.stop) for sl, dim in zip(s.index, x.shape))
        out.append((index, int(s.device.id), functools.partial(np.asarray, s.data)))
    return out


def from_regions(shape: Sequence[int], dtype: Any, sharding: Any, read: Any) -> Any:
    """An array laid out as ``sharding`` whose every device reads only its own region:
    ``read(((start, stop), ...))`` returns that region as numpy."""
    import jax

    shape = tuple(int(d) for d in shape)

    def region(index: tuple[slice, ...]) -> np.ndarray:
        bounds = tuple((sl.start or 0, dim if sl.stop is None else sl.stop) for sl, dim in zip(index, shape))
        return np.asarray(read(bounds), dtype=np.dtype(dtype))

    return jax.make_array_from_callback(shape, sharding, region)


def like_sharding(sharding: Any, shape: Sequence[int]) -> Any:
    """``sharding``'s partition over an array of ``shape``: kept where each sharded axis divides evenly,
    else that axis replicated (an old, smaller value read onto the target's mesh)."""
    import jax

    spec = list(getattr(sharding, "spec", ()))
    mesh = sharding.mesh
    fixed = []
    for axis, dim in enumerate(shape):
        names = spec[axis] if axis < len(spec) else None
        size = 1
        for nm in (names if isinstance(names, tuple) else (names,) if names else ()):
            size *= mesh.shape[nm]
        fixed.append(names if size and dim % size == 0 else None)
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*fixed))


@contextlib.contextmanager
def watch_host_reads() -> Iterator[list[tuple[tuple[int, ...], int]]]:
    """Record every read of a JAX array into host memory, as ``(shape, devices it spans)``.

    On CPU ``jax.transfer_guard("disallow")`` never fires (a CPU buffer is host memory already), so
    a test watches the paths a host read takes instead: ``ArrayImpl._value`` (``__array__``,
    ``jax.device_get``, ``.tolist()``), numpy's ``asarray``/``array``/``ascontiguousarray`` called on a
    JAX array (on CPU numpy reads a one-device array through the buffer protocol, past ``_value``) and
    this backend's ``to_numpy``.

    >>> import jax.numpy as jnp
    >>> with watch_host_reads() as reads:
    ...     _ = np.asarray(jnp.ones(3) + 1)
    >>> reads
    [((3,), 1)]
    """
    import jax
    from jax._src.array import ArrayImpl

    from growstage.framework.backends import jax as backend

    reads: list[tuple[tuple[int, ...], int]] = []

    def note(x: Any) -> None:
        if isinstance(x, jax.Array):
            reads.append((tuple(x.shape), len(x.sharding.device_set)))

    prop = ArrayImpl.__dict__["_value"]

    def value(self: Any) -> Any:
        note(self)
        return prop.fget(self)

    saved = {name: getattr(np, name) for name in ("asarray", "array", "ascontiguousarray")}

    def watched(fn: Any) -> Any:
        @functools.wraps(fn)
        def call(x: Any, *args: Any, **kwargs: Any) -> Any:
            note(x)
            with _quiet(reads):
                return fn(x, *args, **kwargs)
        return call

    to_numpy = backend.to_numpy
    ArrayImpl._value = property(value)
    for name, fn in saved.items():
        setattr(np, name, watched(fn))
    backend.to_numpy = watched(to_numpy)
    try:
        yield reads
    finally:
        ArrayImpl._value = prop
        for name, fn in saved.items():
            setattr(np, name, fn)
        backend.to_numpy = to_numpy


@contextlib.contextmanager
def _quiet(reads: list) -> Iterator[None]:
    """One host read counts once, however many of the watched paths it passes."""
    n = len(reads)
    try:
        yield
    finally:
        del reads[n:]
