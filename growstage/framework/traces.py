"""Releasing what TensorFlow keeps of a dropped model's traced training functions.

Every ``tf.custom_gradient`` used while tracing (Keras's training step uses
some) registers its gradient function in TensorFlow's global gradient registry
under a fresh ``CustomGradient-N`` name, and nothing ever removes it.  The
gradient function's closure holds tensors of the traced graph, so each traced
training step of every model ever trained stays in memory: about 50 MB per
BLSTM model here, without end.  The trainer marks the registry when a stage
starts and, once that stage's model is dropped, removes the entries the stage
added, which releases those graphs.  A function traced during the stage and
still alive elsewhere would lose the gradient of its custom-gradient ops if
it were differentiated again: pass ``fit(..., release_traces=False)`` then.
On the JAX and PyTorch backends there is no such registry: both functions do nothing.
:func:`frozen_heap` keeps the collections that free a dropped model cheap.

Example::

    >>> mark = registry_mark()
    >>> release_since(mark)
    0
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


def _registry() -> dict | None:
    """TensorFlow's gradient registry; None on other Keras backends (nothing to release there)."""
    try:
        import keras

        if keras.backend.backend() != "tensorflow":
            return None
        from tensorflow.python.framework import ops

        reg = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return None
    return reg if isinstance(reg, dict) else None


def has_registry() -> bool:
    """Whether this backend keeps a gradient registry to release (TensorFlow only)."""
    return _registry() is not None


def registry_mark() -> frozenset[str]:
    """The custom-gradient names registered now."""
    reg = _registry()
    return frozenset(k for k in reg if k.startswith("CustomGradient-")) if reg is not None else frozenset()


def release_since(mark: frozenset[str]) -> int:
    """Remove the custom-gradient entries registered after ``mark``; returns how many."""
    reg = _registry()
    if reg is None:
        return 0
    added = [k for k in list(reg) if k.startswith("CustomGradient-") and k not in mark]
    for k in added:
        del reg[k]
    return len(added)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Inside, the garbage collector skips the objects alive on entry (``gc.freeze``).

    A transition collects the dropped model's reference cycles; a full collection walks every
    object in the process, and TensorFlow and Keras alone hold about a million, which cost about
    0.15 s per collection here.  Objects made inside (every model the run builds) are still
    collected.  Nothing frozen is lost: the heap is unfrozen on exit, and cycles among the
    frozen objects are collected later.  A process that froze its heap itself is left as it is.

    Example::

        >>> import gc
        >>> with frozen_heap():
        ...     inside = gc.get_freeze_count() > 0
        >>> inside, gc.get_freeze_count()
        (True, 0)
    """
    if gc.get_freeze_count() > 0:  # the caller froze a heap already (before a fork, say): theirs to manage
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
