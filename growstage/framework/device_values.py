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
    if old_split is None and new_split is None:
        old_split, new_split = whole_split(old_shape), whole_split(new_shape)
    elif old_split is None:
        old_split = derive_split(_check_split(new_split, new_shape, "new"), old_shape)
    elif new_split is None:
        new_split = derive_split(_check_split(old_split, old_shape, "old"), new_shape)
    old_split = _check_split(old_split, old_shape, "old")
    new_split = _check_split(new_split, new_shape, "new")
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
