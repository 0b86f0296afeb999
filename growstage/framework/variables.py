"""Building a model without running its initializers, for a transfer that overwrites them.

Inside :func:`deferred_init`, Keras variables record their initializer instead
of calling it (orthogonal initialisation of recurrent kernels is most of the
time of building a large model).  The transfer then creates each variable
straight from its new value (one copy, no initializer, no backup read), runs
the recorded initializer only for variables that keep or read their init, and
on failure initialises every variable it touched from its initializer, so the
model is left freshly built.  Keras initializers draw from the seed they got
when created, so skipping some does not change the others' values.  Only the
thread that entered the block defers: another thread (a model training while the
next one is built in the background) creates its variables as usual, and blocks of
several threads may overlap.

Relies on the backend Variable's ``_initialize`` and ``_initialize_with_initializer``
(TensorFlow and JAX; on PyTorch, see ``backends.torch.variable_class``, it builds normally).

Example::

    >>> import keras
    >>> with deferred_init() as pending:
    ...     d = keras.layers.Dense(3, name="d"); d.build((None, 2))
    >>> tuple(d.kernel.shape)
    (2, 3)
    >>> pending.materialize_all(); pending.is_pending(d.kernel), d.kernel.numpy().shape
    (False, (2, 3))
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator, NoReturn

import numpy as np

from growstage.core.errors import GrowstageError, TransferError


def _shape(variable: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in variable.shape)


def _backend() -> Any:
    from growstage.framework.backends import current

    return current()


def _mesh_call(name: str, *args: Any) -> Any:
    """A mesh kernel of the backend (JAX under keras.distribution); None where the backend has none."""
    ops = getattr(_backend(), "mesh_ops", None)
    return getattr(ops(), name)(*args) if ops is not None else None


def _sharding(variable: Any) -> Any:
    return _mesh_call("target_sharding", variable)


def laid_out(value: Any, variable: Any) -> Any:
    """A device array laid out as ``variable``'s sharding asks, resharded on the devices (an eager
    ``device_put`` between two shardings reads through the host)."""
    sharding = _sharding(variable) if _backend().is_native(value) else None
    return value if sharding is None else _mesh_call("relayout", value, sharding)


def _variable_class() -> type | None:
    return _backend().variable_class()


def read_tensor(variable: Any) -> Any:
    """The variable's current value as a device array that a later write to the variable leaves
    unchanged (TensorFlow: the variable's buffer, copied on write; JAX: the immutable array;
    PyTorch: a clone on the same device), or None where unavailable."""
    return _backend().read_tensor(variable)


def reads_alias() -> bool:
    """Whether :func:`read_tensor` shares the variable's buffer (TensorFlow, JAX) rather than
    cloning it (PyTorch, where a variable is written in place).

    Example::

        >>> import keras
        >>> reads_alias() == (keras.backend.backend() != "torch")
        True
    """
    return bool(getattr(_backend(), "READS_ALIAS", False))


def tensor_view(tensor: Any) -> np.ndarray:
    """A read-only numpy array of a device array (a view where the backend allows)."""
    return _backend().to_numpy(tensor)


def read_variable(variable: Any) -> np.ndarray:
    """The value of a framework variable as a read-only numpy array (a view of the tensor where possible)."""
    t = read_tensor(variable)
    return tensor_view(t) if t is not None else np.array(variable.numpy())


def host_tensor(value: Any, dtype: Any) -> Any:
    """``value`` (numpy or a device array) as the backend's array of the variable's dtype, copied at most once."""
    return _backend().native(value, dtype)


class Pending:
    """Variables created inside :func:`deferred_init` that have no value yet."""

    def __init__(self, threads: int | None = None) -> None:
        self._vars: dict[int, Any] = {}
        self._inits: dict[int, Any] = {}
        self._placed: set[int] = set()  # created with zeros by placeholders(), value still to come
        self._trainable: dict[int, bool] = {}  # as built: a layer frozen after its build still trains later
        self.active = False
        # threads halve the time of initializers like orthogonal (a QR each), but hold their
        # temporaries at once: threads=1 for the lowest peak memory
        self.threads = threads or os.cpu_count() or 1

    def record(self, variable: Any, initializer: Any) -> None:
        _mesh_call("prepare_layout", variable)  # its layout now: optimizer slots built before its value copy it
        self._vars[id(variable)] = variable
        self._inits[id(variable)] = initializer
        self._trainable[id(variable)] = variable.trainable
        # Keras reads an uninitialised variable as its initializer's value (a placeholder): a model
        # that build() calls on data (subclassed models) runs; the value read is not kept.
        variable._initializer = initializer
        if not hasattr(variable, "_value"):
            variable._value = None

    def _done(self, variable: Any) -> None:
        del self._vars[id(variable)]
        self._placed.discard(id(variable))
        variable._initializer = None

    def is_pending(self, variable: Any) -> bool:
        return id(variable) in self._vars

    def set(self, variable: Any, value: np.ndarray) -> None:
        """Create the variable from ``value`` (its initializer never runs)."""
        self._give(variable, host_tensor(value, variable.dtype))

    def materialize(self, variable: Any) -> None:
        if id(variable) in self._placed:
            init = self._inits[id(variable)]
            self._give(variable, init(_shape(variable), dtype=variable.dtype))
        elif id(variable) in self._vars:
            self._create(variable, lambda: variable._initialize_with_initializer(self._inits[id(variable)]))
            self._done(variable)

    def materialize_many(self, variables: list[Any]) -> None:
        """Materialize several at once: initializers seeded with a plain int are pure functions, so
        their values are computed in threads (TensorFlow ops release the GIL); the variables are
        created here, in the caller's thread, where a ``tf.distribute`` scope applies."""
        todo = [v for v in {id(v): v for v in variables}.values() if id(v) in self._vars]
        # a sharded variable's init runs through Keras, jitted onto its layout: never whole on one device
        pure = [v for v in todo if isinstance(getattr(self._inits[id(v)], "seed", None), int) and _sharding(v) is None]
        if len(pure) > 1 and self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            def value(v: Any) -> Any:
                return self._inits[id(v)](_shape(v), dtype=v.dtype)

            with ThreadPoolExecutor(max_workers=min(len(pure), self.threads)) as pool:
                for v, val in zip(pure, pool.map(value, pure)):
                    self._give(v, val)
        for v in todo:
            self.materialize(v)

    def materialize_all(self) -> None:
        for v in list(self._vars.values()):
            self.materialize(v)

    def placeholders(self) -> None:
        """Create every variable still pending, with zeros.  They stay pending: :meth:`set` then writes
        into the buffer in place and an undo gives them their initializer's value.  For code that
        needs real variables before the values are known (an optimizer's build, ahead of a transfer).

        Example::

            >>> import keras, numpy as np
            >>> with deferred_init() as pending:
            ...     d = keras.layers.Dense(2); d.build((None, 2))
            >>> pending.placeholders()  # (PyTorch defers nothing: there the kernel exists already)
            >>> if pending.active:
            ...     pending.set(d.kernel, np.ones((2, 2), "f4"))
            ... else:
            ...     _ = d.kernel.assign(np.ones((2, 2), "f4"))
            >>> np.array(d.kernel).tolist(), len(pending) == (1 if pending.active else 0)
            ([[1.0, 1.0], [1.0, 1.0]], True)
            >>> pending.materialize_all()
        """
        for v in self._vars.values():
            if id(v) not in self._placed:
                self._create(v, lambda: v._initialize(host_tensor(np.zeros(_shape(v), np.dtype(v.dtype)), v.dtype)))
                self._placed.add(id(v))

    def _create(self, variable: Any, create: Any) -> None:
        # TensorFlow fixes a variable's `trainable` (what a GradientTape watches) when it is created;
        # create it as the build would have, not as a layer frozen since then says
        now = variable._trainable
        variable._trainable = self._trainable.get(id(variable), now)
        try:
            create()
        finally:
            variable._trainable = now

    def _give(self, variable: Any, value: Any) -> None:
        if id(variable) in self._placed:
            variable.assign(value)
        else:
            self._create(variable, lambda: variable._initialize(value))
        self._done(variable)

    def initializer(self, variable: Any) -> Any:
        return self._inits[id(variable)]

    def reinitialize(self, variable: Any) -> None:
        """Give a variable created from a value its initializer's value, as a fresh build would."""
        self._create(variable, lambda: variable._initialize_with_initializer(self._inits[id(variable)]))

    def __len__(self) -> int:
        return len(self._vars)


_deferring: dict[int, list[Pending]] = {}  # thread id -> its open deferred_init blocks, innermost last
_defer_lock = threading.Lock()
_NAMES = ("_initialize_with_initializer", "_deferred_initialize")
_saved: dict[str, Any] = {}


def _waiting() -> Pending | None:
    stack = _deferring.get(threading.get_ident())
    return stack[-1] if stack else None


def _patch(cls: type) -> None:
    """Make ``cls`` defer for the threads inside a block (once, however many blocks are open)."""
    _saved.update({n: cls.__dict__[n] for n in _NAMES if n in cls.__dict__})  # JAX's inherits some
    original, original_deferred = cls._initialize_with_initializer, cls._deferred_initialize

    def record(self: Any, initializer: Any) -> None:
        pending = _waiting()
        if pending is None:
            return original(self, initializer)
        pending.record(self, initializer)

    def deferred(self: Any) -> None:
        # Keras's own deferral (variables made in a stateless scope) clears _initializer afterwards;
        # a variable still pending here needs it for the placeholder read
        original_deferred(self)
        pending = _waiting()
        if pending is not None and pending.is_pending(self):
            self._initializer = pending.initializer(self)

    cls._initialize_with_initializer, cls._deferred_initialize = record, deferred


def _unpatch(cls: type) -> None:
    for n in _NAMES:
        if n in _saved:
            setattr(cls, n, _saved[n])
        else:
            delattr(cls, n)
    _saved.clear()


@contextlib.contextmanager
def deferred_init(threads: int | None = None) -> Iterator[Pending]:
    """Within the block, new Keras variables of this thread wait for a value (see the module doc)."""
    pending = Pending(threads)
    cls = _variable_class()
    if cls is None:
        yield pending
        return
    tid = threading.get_ident()
    with _defer_lock:
        if not _deferring:
            _patch(cls)
        _deferring.setdefault(tid, []).append(pending)
    pending.active = True
    try:
        yield pending
    finally:
        with _defer_lock:
            _deferring[tid].pop()
            if not _deferring[tid]:
                del _deferring[tid]
            if not _deferring:
                _unpatch(cls)


class UndoLog:
    """Remembers each variable's value before its first write, to restore on failure.

    Variables of a model built under :func:`~growstage.framework.variables.deferred_init`
    that have no value yet are created straight from their new value, with nothing
    to back up; on failure they get their initializer's value, as a fresh build would.
    """

    def __init__(self, pending: Any = None) -> None:
        self.saved: list[tuple[Any, np.ndarray]] = []
        self.seen: set[int] = set()
        self.pending = pending
        self.fresh: list[Any] = []

    def is_pending(self, variable: Any) -> bool:
        return self.pending is not None and self.pending.is_pending(variable)

    def keep(self, variable: Any, value: np.ndarray | None = None) -> None:
        if id(variable) not in self.seen and not self.is_pending(variable):
            self.seen.add(id(variable))
            if value is None:
                # a sharded variable's backup is its (immutable) device array: no host copy of the model
                value = read_tensor(variable) if _sharding(variable) is not None else None
            self.saved.append((variable, read_variable(variable) if value is None else value))

    def current_tensor(self, variable: Any) -> Any:
        """As :meth:`current`, but the device array (a sharded variable's init stays on its devices)."""
        if self.is_pending(variable):
            self.pending.materialize(variable)
        value = read_tensor(variable)
        self.keep(variable, value)
        return value

    def current(self, variable: Any) -> np.ndarray:
        """The variable's value now (its init, for a variable still waiting for one), kept for undo."""
        if self.is_pending(variable):
            self.pending.materialize(variable)
        value = read_variable(variable)
        self.keep(variable, value)
        return value

    def write(self, variable: Any, value: Any, name: str) -> None:
        """The one way a transfer writes: shape-checked, backed up (or created, if still pending)."""
        shape = _shape(variable)
        if tuple(int(d) for d in value.shape) != shape:
            raise GrowstageError(f"param {name}: value of shape {tuple(value.shape)} for a variable of shape {shape}")
        value = laid_out(value, variable)
        if self.is_pending(variable):
            self.pending.set(variable, value)
            self.fresh.append(variable)
        else:
            self.keep(variable)
            variable.assign(host_tensor(value, variable.dtype))

    def finish(self) -> None:
        if self.pending is not None:
            self.pending.materialize_all()

    def fail(self, error: BaseException, what: str) -> NoReturn:
        """Restore everything, then re-raise ``error`` (as a TransferError unless it is an interrupt)."""
        lost = self.restore()
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise error
        state = ("every target value was restored" if not lost
                 else f"COULD NOT RESTORE {', '.join(lost)}: reload those from a snapshot")
        raise TransferError(f"{what}: {type(error).__name__}: {error}; {state}") from error

    def restore(self) -> list[str]:
        """Restore every saved value; returns the paths that could not be restored."""
        lost = []
        for variable, value in reversed(self.saved):
            try:
                variable.assign(value)
            except Exception:  # keep restoring the others
                lost.append(getattr(variable, "path", repr(variable)))
        for variable in self.fresh:
            try:
                self.pending.reinitialize(variable)
            except Exception:
                lost.append(getattr(variable, "path", repr(variable)))
        try:
            self.finish()
        except Exception:
            lost.append("variables still waiting for their initializer")
        return lost
