"""Block-wise copy, slice and pad with the Keras backend's own array ops, on the source's device.

A snapshot of a live model holds device arrays; a transfer from it resizes them where they are
(no round trip through host memory) and hands the result to the new variable.  Same blocks as
:func:`growstage.core.resize.resize`, so the values are bit-identical to the numpy path.

Example::

    >>> import numpy as np
    >>> from growstage.framework.backends import current
    >>> old = current().native(np.arange(4, dtype="float32").reshape(1, 4), "float32")
    >>> out = resize_device(old, (1, 6), old_split=[[1], [2, 2]], new_split=[[1], [3, 3]], fill=-1)
    >>> current().to_numpy(out).tolist()
    [[0.0, 1.0, -1.0, 2.0, 3.0, -1.0]]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from growstage.core.resize import _check_split, block_slices, derive_split, whole_split
from growstage.core.errors import ShapeError
from growstage.framework.backends import current


def resize_device(old: Any, new_shape: Sequence[int], *, old_split: Any = None, new_split: Any = None,
                  fill: Any = 0) -> Any:
    """``old`` (a device array) copied block-wise into a new device array of ``new_shape``.

    ``fill``: a scalar, or an array (numpy or device) of the new shape holding the uncovered values.
    """
    be = current()
    old_shape = tuple(int(d) for d in old.shape)
    new_shape = tuple(int(d) for d in new_shape)
    if len(new_shape) != len(old_shape):
        raise ShapeError(f"cannot resize an array of shape {old_shape} to {new_shape}: the number of axes differs")
    old_split, new_split = _splits(old_shape, new_shape, old_split, new_split)
    for axis, (o, n) in enumerate(zip(old_split, new_split)):
        if len(o) != len(n):
            raise ShapeError(f"axis {axis}: the old array has {len(o)} blocks {o}, the new one {len(n)} blocks {n}")
    dtype = np.dtype(old.dtype.as_numpy_dtype) if hasattr(old.dtype, "as_numpy_dtype") else np.dtype(str(old.dtype).replace("torch.", ""))
    out = be.filled(fill, new_shape, dtype, old)
    for o_idx, n_idx in block_slices(old_split, new_split):
        out = be.place(out, n_idx, old[o_idx])
    return be.finish(out)


def resizes_on_device() -> bool:
    """Whether transfers slice and pad a snapshot's device arrays on the device (JAX, PyTorch)."""
    return bool(getattr(current(), "DEVICE_RESIZE", False))


def is_device_array(x: Any) -> bool:
    """Whether ``x`` is an array of the Keras backend in use (a snapshot's device value)."""
    return x is not None and current().is_native(x)


# --- sharded params (keras.distribution on JAX): new values computed on the devices, laid out as
# the target variable's layout asks; see backends/jax_mesh.py for the kernels.

def _mesh() -> Any:
    ops = getattr(current(), "mesh_ops", None)
    return ops() if ops is not None else None


def target_sharding(variable: Any) -> Any | None:
    """The sharding a variable gets under the active ``keras.distribution`` (JAX); None elsewhere.

    >>> import keras
    >>> target_sharding(keras.Variable(1.0)) is None   # no distribution active
    True
    """
    m = _mesh()
    return m.target_sharding(variable) if m is not None else None


def on_mesh(variables: Any) -> bool:
    """Whether ``variables`` (a model's weights) are laid out by a distribution (their values stay on the devices).

    >>> import keras
    >>> on_mesh([keras.Variable(1.0)])
    False
    """
    return any(target_sharding(v) is not None for v in list(variables)[:1]) if _mesh() is not None else False


def device_source(value: Any, sharding: Any) -> Any | None:
    """A source value on the devices: a live snapshot's device array, or a sharded snapshot file's
    param, each device reading only the region it holds under ``sharding``'s partition; None for
    values that only numpy holds."""
    m = _mesh()
    tensor = getattr(value, "tensor", None)
    if tensor is not None and current().is_native(tensor):
        return tensor
    if current().is_native(value):
        return value
    if hasattr(value, "read_region"):
        return m.from_regions(value.shape, value.dtype, m.like_sharding(sharding, value.shape), value.read_region)
    return None


def _splits(old_shape: tuple, new_shape: tuple, old_split: Any, new_split: Any) -> tuple[Any, Any]:
    """Both splits, checked; a missing one derived from the other (one block per axis when both are)."""
    if old_split is None and new_split is None:
        return whole_split(old_shape), whole_split(new_shape)
    if old_split is None:
        old_split = derive_split(_check_split(new_split, new_shape, "new"), old_shape)
    elif new_split is None:
        new_split = derive_split(_check_split(old_split, old_shape, "old"), new_shape)
    return _check_split(old_split, old_shape, "old"), _check_split(new_split, new_shape, "new")


def _blocks(old_shape: tuple, new_shape: tuple, old_split: Any, new_split: Any) -> tuple[list, list]:
    old_split, new_split = _splits(old_shape, new_shape, old_split, new_split)
    pairs = list(block_slices(old_split, new_split))
    return ([tuple((s.start, s.stop) for s in o) for o, _ in pairs],
            [tuple((s.start, s.stop) for s in n) for _, n in pairs])


def value_on_devices(old: Any, shape: Any, sharding: Any, *, dtype: Any, old_split: Any = None, new_split: Any = None,
                     fill: Any = 0, growth: Any = None, fresh: Any = None, draw: tuple | None = None, seed: int = 0,
                     noise: float = 0.0, power: int = 1, keep_old_only: bool = False, offset: float = 0.0) -> Any:
    """The new value of a param (or slot) from ``old`` (on the devices), laid out as ``sharding``.

    Same semantics as the numpy path: a block-wise copy (:func:`growstage.core.resize.block_slices`)
    over ``fill`` (scalar, array) or over entries ``draw``-n from a distribution (``init-blocks``),
    or a function-preserving ``growth`` map (:class:`growstage.core.growth.GrowthMap`) with
    ``fresh`` entries; ``power`` scales optimizer slots; ``keep_old_only`` zeroes the entries a
    block-wise copy would not cover (slots under ``new_entries="zero"``).
    """
    m = _mesh()
    shape = tuple(int(d) for d in shape)
    old_shape = tuple(int(d) for d in old.shape)
    if growth is None and old_shape == shape and (old_split is None or old_split == new_split):
        out = m.relayout(old, sharding)
        return out if np.dtype(out.dtype) == np.dtype(dtype) else m.relayout(out.astype(np.dtype(dtype)), sharding)
    o_blocks, n_blocks = _blocks(old_shape, shape, old_split, new_split)
    if growth is None:
        if callable(fill):
            fill = np.asarray(fill(shape, np.dtype(old.dtype)))
        return m.resize(old, shape, o_blocks, n_blocks, fill, sharding, dtype=dtype, draw=draw, seed=seed)
    plan = growth.plan(np.dtype(old.dtype), power=power, fresh=fresh is not None, noise=noise, seed=seed,
                       offset=offset)
    if keep_old_only:
        kept = np.zeros(shape, bool)
        for n in n_blocks:
            kept[tuple(slice(a, b) for a, b in n)] = True
        plan.zero = plan.zero | ~kept
    out = m.grow(plan, old, fresh, sharding)
    return out if np.dtype(out.dtype) == np.dtype(dtype) else m.relayout(out.astype(np.dtype(dtype)), sharding)


def all_finite(x: Any) -> bool:
    """Whether a device array holds no NaN/Inf (reduced on the devices)."""
    return _mesh().all_finite(x)
