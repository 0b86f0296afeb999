"""Where Keras backends differ: reading a variable, making a value a variable takes, device array ops.

Each backend module (``tensorflow``, ``jax``, ``torch``) offers the same small interface:

- ``read_tensor(variable)``: the variable's value as a device array a snapshot may hold (a later
  write to the variable must not change it), or None;
- ``to_numpy(tensor)``: a read-only numpy array of it (a view where the backend allows);
- ``native(value, dtype)``: ``value`` (numpy or a device array) as what ``variable.assign`` and a
  deferred variable's ``_initialize`` take, on the variable's device, copied at most once;
- ``is_native(x)``: whether ``x`` is a device array of this backend;
- ``variable_class()``: the backend's Variable class if it has the deferred-initialisation hooks;
- ``zeros(shape, dtype, like)`` / ``place(out, index, block)`` / ``cast(x, dtype)``: the device
  array ops a block-wise copy needs (``place`` returns the result: jax arrays are immutable).

Example::

    >>> current().__name__.rsplit(".", 1)[-1] in ("tensorflow", "jax", "torch")
    True
"""
from __future__ import annotations

import importlib
from types import ModuleType

from growstage.core.errors import GrowstageError
from growstage.io.optional import require_tensorflow  # noqa: F401  (re-exported)

BACKENDS = ("tensorflow", "jax", "torch")


def deferrable_variable_class(module: str) -> type | None:
    """Keras's Variable class in ``module`` if it has the hooks deferred initialisation wraps."""
    try:
        cls = importlib.import_module(module).Variable
    except (ImportError, AttributeError):
        return None
    ok = all(hasattr(cls, m) for m in ("_initialize", "_initialize_with_initializer", "_deferred_initialize"))
    return cls if ok else None


def backend_name() -> str:
    """The Keras backend in use (``KERAS_BACKEND``)."""
    import keras

    return str(keras.backend.backend())


def current() -> ModuleType:
    """The module for the Keras backend in use."""
    name = backend_name()
    if name not in BACKENDS:
        raise GrowstageError(f"Keras backend {name!r} is not supported; use one of {', '.join(BACKENDS)} "
                             "(set KERAS_BACKEND)")
    return importlib.import_module(f"{__name__}.{name}")
