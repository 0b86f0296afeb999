"""TensorFlow backend: snapshots share the variables' buffers (a write copies the buffer first).

Example::

    >>> import numpy as np
    >>> to_numpy(native(np.ones(2), "float32")).tolist()
    [1.0, 1.0]
"""
from __future__ import annotations

from typing import Any

import numpy as np

# read_tensor shares the variable's buffer (copied on write)
READS_ALIAS = True


# transfers slice / pad through numpy on TensorFlow: a sliced assign into a scratch tf.Variable fails
# under a tf.distribute strategy, and on CPU the numpy views share the snapshot's buffers anyway
DEVICE_RESIZE = False


def variable_class() -> type | None:
    from growstage.framework.backends import deferrable_variable_class

    return deferrable_variable_class("keras.src.backend.tensorflow.core")


def is_native(x: Any) -> bool:
    return hasattr(x, "_numpy") and hasattr(x, "device")


def read_tensor(variable: Any) -> Any:
    try:
        import tensorflow as tf

        t = tf.convert_to_tensor(getattr(variable, "value", variable))
        t._numpy  # eager only
        return t
    except Exception:
        return None


def to_numpy(tensor: Any) -> np.ndarray:
    arr = np.asarray(tensor._numpy() if hasattr(tensor, "_numpy") else tensor)  # shares the tensor's buffer; read-only, since the buffer may be a variable's
    arr.flags.writeable = False
    return arr


def native(value: Any, dtype: Any) -> Any:
    """``tf.convert_to_tensor`` copies a numpy array twice (a defensive copy, then the tensor);
    building the eager tensor directly copies once.  Falls back to the array."""
    if is_native(value):
        if np.dtype(value.dtype.as_numpy_dtype) == np.dtype(dtype):
            return value  # a new variable shares its buffer until one of them is written
        return cast(value, dtype)
    arr = np.asarray(value, dtype=np.dtype(dtype), order="C")  # (ascontiguousarray would make a 0-d value 1-d)
    try:
        import tensorflow as tf
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        if not tf.executing_eagerly():
            return arr
        return ops.EagerTensor(arr, context.context().device_name, tf.as_dtype(arr.dtype).as_datatype_enum)
    except Exception:  # another TensorFlow version, or not eager: let Keras convert it
        return arr


def cast(x: Any, dtype: Any) -> Any:
    import tensorflow as tf

    return tf.cast(x, np.dtype(dtype))


def filled(fill: Any, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
    """A writable device buffer holding ``fill`` (a scalar or a device/numpy array of ``shape``)."""
    import tensorflow as tf

    with tf.device(like.device):
        base = tf.fill(shape, tf.constant(fill, np.dtype(dtype))) if np.ndim(fill) == 0 and not is_native(fill) \
            else tf.identity(tf.cast(fill, np.dtype(dtype)))
        return tf.Variable(base, trainable=False)


def place(out: Any, index: tuple[slice, ...], block: Any) -> Any:
    out[index].assign(block)
    return out


def finish(out: Any) -> Any:
    return out.read_value()


def rng_state() -> None:
    """None: this backend keeps no global random state of its own (Keras seed generators hold it)."""
    return None


def set_rng_state(state: Any) -> None:
    pass
