"""Running Keras work in a background thread as if it ran later in the caller's thread.

Keras keeps its global state per thread (name counters, dtype policy, distribution), and a
``tf.distribute`` scope is per thread too: a plain thread would build with none of the
caller's settings.  :class:`Background` copies them in.  Randomness: Keras initializers and
seed generators draw their seeds from Python's ``random`` when they are made; the thread gets
its own ``random.Random`` (seeded like ``keras.utils.set_random_seed(seed)`` seeds the global
one), so the caller's training keeps its own stream, and :meth:`Background.adopt` hands the
thread's final state to the caller, as if the work had run there right after seeding.

Example::

    >>> import keras, random
    >>> job = Background(lambda: keras.layers.Dense(2, name="d").kernel_initializer.seed, seed=7)
    >>> drawn = job.result()
    >>> keras.utils.set_random_seed(7); drawn == keras.layers.Dense(2).kernel_initializer.seed
    True
"""
from __future__ import annotations

import collections
import contextlib
import copy
import random
import threading
from typing import Any, Callable

# the module functions of ``random`` that draw from its hidden global instance
_RANDOM_FUNCS = ("random", "uniform", "triangular", "randint", "randrange", "choice", "choices", "shuffle",
                 "sample", "getrandbits", "randbytes", "gauss", "normalvariate", "lognormvariate",
                 "expovariate", "vonmisesvariate", "gammavariate", "betavariate", "paretovariate",
                 "weibullvariate", "binomialvariate", "getstate", "setstate", "seed")

_isolated: dict[int, random.Random] = {}  # thread id -> that thread's own Random
_patch_lock = threading.Lock()
_originals: dict[str, Any] = {}


def _dispatch(name: str) -> Callable:
    original = _originals[name]

    def call(*args: Any, **kwargs: Any) -> Any:
        own = _isolated.get(threading.get_ident())
        return getattr(own, name)(*args, **kwargs) if own is not None else original(*args, **kwargs)

    return call


@contextlib.contextmanager
def _own_random(rng: random.Random):
    """Inside, ``random.<func>`` in this thread draws from ``rng``; other threads are untouched."""
    with _patch_lock:
        if not _isolated:
            for name in _RANDOM_FUNCS:
                if hasattr(random, name):
                    _originals[name] = getattr(random, name)
                    setattr(random, name, _dispatch(name))
        _isolated[threading.get_ident()] = rng
    try:
        yield
    finally:
        with _patch_lock:
            del _isolated[threading.get_ident()]
            if not _isolated:
                for name, fn in _originals.items():
                    setattr(random, name, fn)
                _originals.clear()


def _keras_state() -> dict[str, Any]:
    from keras.src.backend.common import global_state

    # containers are copied: the thread's name counters must not move the caller's
    return {k: copy.copy(v) for k, v in vars(global_state.GLOBAL_STATE_TRACKER).items()}


def active_strategy() -> Any:
    """The ``tf.distribute`` strategy whose scope this thread is in, or None."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


class Background:
    """``fn()`` in a daemon thread with the caller's Keras state and its own seeded ``random``.

    ``seed``: the thread's ``random`` starts as ``random.seed(seed)`` leaves the global one;
    None: from a draw of the caller's ``random`` (an unseeded run stays unseeded).
    """

    def __init__(self, fn: Callable[[], Any], *, seed: int | None = None, strategy: Any = None) -> None:
        self._rng = random.Random(seed if seed is not None else random.getrandbits(64))
        self._state = _keras_state()
        self._strategy = strategy if strategy is not None else active_strategy()
        self._fn, self._value, self.error = fn, None, None
        self._names: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="growstage-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from keras.src.backend.common import global_state

        for k, v in self._state.items():
            global_state.set_global_attribute(k, v)
        scope = self._strategy.scope() if self._strategy is not None else contextlib.nullcontext()
        try:
            with _own_random(self._rng), scope:
                self._value = self._fn()
        except BaseException as e:  # handed to the caller by result()
            self.error = e
        finally:
            self._names = dict(global_state.get_global_attribute("object_name_uids") or {})

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        """Wait, then ``fn``'s value (its exception re-raised)."""
        self.wait()
        if self.error is not None:
            raise self.error
        return self._value

    def adopt(self) -> None:
        """In the caller's thread, after it re-seeded: continue ``random`` where the thread left it,
        and count the names the thread used, so later automatic names do not repeat them."""
        from keras.src.backend.common import global_state

        self.wait()
        random.setstate(self._rng.getstate())
        uids = global_state.get_global_attribute("object_name_uids", default=collections.defaultdict(int),
                                                 set_to_default=True)
        for k, n in self._names.items():
            uids[k] = max(uids.get(k, 0), n)
