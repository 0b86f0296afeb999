"""Running Keras work in a background thread as if it ran later in the caller's thread.

Keras keeps its global state per thread (name counters, dtype policy, distribution), and a
``tf.distribute`` scope and a ``tf.device`` scope are per thread too: a plain thread would
build with none of the caller's settings.  :class:`Background` copies them in.  Randomness, as
``keras.utils.set_random_seed(seed)`` would leave it in the caller:

- Python's ``random`` (Keras initializers and seed generators draw their seeds from it when
  they are made): the thread gets its own ``random.Random(seed)``;
- Keras's global seed generator (unseeded ``keras.random`` calls): the thread starts without
  one, as after seeding, and makes its own;
- ``np.random.seed``, ``tf.random.set_seed`` and ``torch.manual_seed`` called in the thread (a
  build that calls ``keras.utils.set_random_seed``) are recorded instead of run, so the caller's
  training keeps its generators.

:meth:`Background.adopt` hands all of it to the caller, in order.  Draws from numpy's,
TensorFlow's or PyTorch's global generators in the thread are not isolated.

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
import sys
import threading
from typing import Any, Callable, Iterator

# the module functions of ``random`` that use its hidden global instance
_RANDOM_FUNCS = ("random", "uniform", "triangular", "randint", "randrange", "choice", "choices", "shuffle",
                 "sample", "getrandbits", "randbytes", "gauss", "normalvariate", "lognormvariate",
                 "expovariate", "vonmisesvariate", "gammavariate", "betavariate", "paretovariate",
                 "weibullvariate", "binomialvariate", "getstate", "setstate", "seed")
# process-wide seeding that a build may call (keras.utils.set_random_seed does): recorded in the thread
_SEEDING = (("numpy.random", "seed"), ("tensorflow.random", "set_seed"), ("torch", "manual_seed"))
_SEED_KEYS = ("global_random_seed", "global_seed_generator")  # Keras's, reset by set_random_seed

_jobs: dict[int, "Background"] = {}  # thread id -> the job running in it
_lock = threading.Lock()
_originals: dict[tuple[Any, str], Any] = {}


def _dispatch(module: Any, name: str, own: Callable[["Background"], Callable]) -> Callable:
    original = _originals[(module, name)]

    def call(*args: Any, **kwargs: Any) -> Any:
        job = _jobs.get(threading.get_ident())
        return own(job)(*args, **kwargs) if job is not None else original(*args, **kwargs)

    return call


def _targets() -> list[tuple[Any, str, Callable[["Background"], Callable]]]:
    out = [(random, n, lambda job, n=n: getattr(job.rng, n)) for n in _RANDOM_FUNCS if hasattr(random, n)]
    for path, fn in _SEEDING:
        top, *rest = path.split(".")
        mod = sys.modules.get(top)
        for part in rest:
            mod = getattr(mod, part, None)
        if mod is not None and hasattr(mod, fn):
            out.append((mod, fn, lambda job, mod=mod, fn=fn: job.recorder(mod, fn)))
    return out


@contextlib.contextmanager
def _isolated(job: "Background") -> Iterator[None]:
    """Inside, this thread's ``random`` and process-wide seeding go to ``job``; other threads are untouched."""
    with _lock:
        if not _jobs:
            for module, name, own in _targets():
                _originals[(module, name)] = getattr(module, name)
                setattr(module, name, _dispatch(module, name, own))
        _jobs[threading.get_ident()] = job
    try:
        yield
    finally:
        with _lock:
            del _jobs[threading.get_ident()]
            if not _jobs:
                for (module, name), fn in _originals.items():
                    setattr(module, name, fn)
                _originals.clear()


def _keras_state() -> dict[str, Any]:
    from keras.src.backend.common import global_state

    # containers are copied: the thread's name counters must not move the caller's
    return {k: copy.copy(v) for k, v in vars(global_state.GLOBAL_STATE_TRACKER).items()}


def active_strategy() -> Any:
    """The ``tf.distribute`` strategy whose scope this thread is in, or None.

    Example::

        >>> active_strategy() is None  # outside any strategy.scope()
        True
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else None


def _device_scope() -> Any:
    """The caller's ``tf.device`` scope, to enter in the thread (a null context without one)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return contextlib.nullcontext
    from tensorflow.python.eager import context

    name = context.context().device_name if tf.executing_eagerly() else None
    return (lambda: tf.device(name)) if name else contextlib.nullcontext


class Background:
    """``fn()`` in a daemon thread with the caller's Keras state and its own seeded randomness.

    ``seed``: the thread starts as ``keras.utils.set_random_seed(seed)`` leaves a thread; None:
    its ``random`` from a draw of the caller's (an unseeded run stays unseeded).
    """

    def __init__(self, fn: Callable[[], Any], *, seed: int | None = None, strategy: Any = None) -> None:
        self.rng = random.Random(seed if seed is not None else random.getrandbits(64))
        self._state = _keras_state()
        for key in _SEED_KEYS:
            self._state.pop(key, None)
        if seed is not None:
            self._state["global_random_seed"] = seed
        self._strategy = strategy if strategy is not None else active_strategy()
        self._device = _device_scope()
        self._fn, self._value, self.error = fn, None, None
        self._seeding: list[tuple[Callable, tuple, dict]] = []
        self._final: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="growstage-prepare", daemon=True)
        self._thread.start()

    def recorder(self, module: Any, name: str) -> Callable:
        """What ``module.name`` (a process-wide seeding function) does in this job's thread: record the call."""
        original = _originals[(module, name)]

        def record(*args: Any, **kwargs: Any) -> None:
            self._seeding.append((original, args, kwargs))

        return record

    def _run(self) -> None:
        from keras.src.backend.common import global_state

        for k, v in self._state.items():
            global_state.set_global_attribute(k, v)
        scope = self._strategy.scope() if self._strategy is not None else contextlib.nullcontext()
        try:
            with _isolated(self), self._device(), scope:
                self._value = self._fn()
        except BaseException as e:  # handed to the caller by result()
            self.error = e
        finally:
            self._final = {k: global_state.get_global_attribute(k) for k in _SEED_KEYS + ("object_name_uids",)}

    def done(self) -> bool:
        """Whether ``fn`` has returned or raised."""
        return not self._thread.is_alive()

    def wait(self) -> None:
        """Block until ``fn`` has returned or raised."""
        self._thread.join()

    def result(self) -> Any:
        """Wait, then ``fn``'s value (its exception re-raised)."""
        self.wait()
        if self.error is not None:
            raise self.error
        return self._value

    def adopt(self) -> None:
        """In the caller's thread, after it re-seeded: run the seeding the thread recorded, continue
        ``random`` and Keras's seed generator where the thread left them, and count the names the
        thread used, so later automatic names do not repeat them."""
        from keras.src.backend.common import global_state

        self.wait()
        for fn, args, kwargs in self._seeding:
            fn(*args, **kwargs)
        random.setstate(self.rng.getstate())
        for key in _SEED_KEYS:
            if self._final.get(key) is not None:
                global_state.set_global_attribute(key, self._final[key])
        uids = global_state.get_global_attribute("object_name_uids", default=collections.defaultdict(int),
                                                 set_to_default=True)
        for k, n in (self._final.get("object_name_uids") or {}).items():
            uids[k] = max(uids.get(k, 0), n)
