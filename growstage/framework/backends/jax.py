"""JAX backend: arrays are immutable, so a snapshot holds the variable's own array (no copy).

Example::

    >>> import numpy as np
    >>> to_numpy(native(np.ones(2), "float32")).tolist()
    [1.0, 1.0]
"""
from __future__ import annotations

from typing import Any

import numpy as np

# read_tensor shares the variable's buffer (arrays are immutable)
READS_ALIAS = True


DEVICE_RESIZE = True  # transfers slice / pad on the device (device_values.resize_device)


def mesh_ops() -> Any:
    """The kernels for arrays laid out over a ``keras.distribution`` mesh (:mod:`.jax_mesh`)."""
    from growstage.framework.backends import jax_mesh

    return jax_mesh


def variable_class() -> type | None:
    from growstage.framework.backends import deferrable_variable_class

    return deferrable_variable_class("keras.src.backend.jax.core")


def is_native(x: Any) -> bool:
    import jax

    return isinstance(x, jax.Array)


def read_tensor(variable: Any) -> Any:
    value = getattr(variable, "value", variable)
    return value if is_native(value) else None


def to_numpy(tensor: Any) -> np.ndarray:
    arr = np.asarray(tensor)  # a view on CPU devices, a host copy otherwise
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def native(value: Any, dtype: Any) -> Any:
    import jax.numpy as jnp

    if is_native(value):
        return value if np.dtype(value.dtype) == np.dtype(dtype) else value.astype(np.dtype(dtype))
    return jnp.asarray(np.asarray(value, dtype=np.dtype(dtype)))


def cast(x: Any, dtype: Any) -> Any:
    return x.astype(np.dtype(dtype))


def filled(fill: Any, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
    import jax.numpy as jnp

    if np.ndim(fill) == 0 and not is_native(fill):
        return jnp.full(shape, fill, dtype=np.dtype(dtype), device=like.sharding)
    return native(fill, dtype)  # immutable: place() returns new arrays, never writes into fill


def place(out: Any, index: tuple[slice, ...], block: Any) -> Any:
    return out.at[index].set(block)


def finish(out: Any) -> Any:
    return out


def rng_state() -> None:
    """None: this backend keeps no global random state of its own (Keras seed generators hold it)."""
    return None


def set_rng_state(state: Any) -> None:
    pass
