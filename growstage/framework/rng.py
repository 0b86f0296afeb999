"""Every random state a training epoch draws from, as JSON, so that a resumed run goes on exactly
where the interrupted one stopped.

``fit(shuffle=True)`` shuffles with numpy's global generator (JAX) or torch's (PyTorch); dropout
and other random layers draw from Keras ``SeedGenerator`` states (JAX's keys live there);
Python's ``random`` and Keras's global seed generator serve the rest.  :func:`capture` reads them
all after an epoch; :func:`restore` puts them back into a rebuilt model of the same architecture.

Example::

    >>> import keras, numpy as np
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, name="d")])
    >>> state = capture(m)
    >>> a = np.random.rand()
    >>> restore(m, state)
    >>> bool(np.random.rand() == a)
    True
"""
from __future__ import annotations

import random
from typing import Any

import keras
import numpy as np

from growstage.core.errors import GrowstageError
from growstage.framework.backends import current


def _seed_generators(model: Any) -> list[tuple[str, Any]]:
    """``(owner layer#index, generator)`` of the model's Keras seed generators, in the (deterministic)
    order its layers are walked; named by their layers (a generator's own name counts up per process)."""
    out = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for i, gen in enumerate(getattr(layer, "_seed_generators", ())):
            out.append((f"{getattr(layer, 'path', None) or layer.name}#{i}", gen))
    return out


def _global_generator() -> Any:
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    return global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)


def _state(gen: Any) -> list[int]:
    return [int(v) for v in np.asarray(keras.ops.convert_to_numpy(gen.state)).ravel()]


def capture(model: Any) -> dict[str, Any]:
    """The random states as JSON-able lists (numpy, Python, the backend's, Keras seed generators)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    glob = _global_generator()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
            "backend": current().rng_state(),
            "keras_global": _state(glob) if glob is not None else None,
            "seed_generators": [[name, _state(g)] for name, g in _seed_generators(model)]}


def restore(model: Any, state: dict[str, Any] | None) -> None:
    """Put :func:`capture`'s states back (``model``: the rebuilt model of the same architecture)."""
    if not state:
        return  # a checkpoint written before random states were saved
    gens = _seed_generators(model)
    saved = state.get("seed_generators", [])
    if [p for p, _ in saved] != [p for p, _ in gens]:
        raise GrowstageError(f"resume: the rebuilt model's random layers {[p for p, _ in gens]} differ "
                             f"from the checkpoint's {[p for p, _ in saved]}; build the same model for the stage")
    for (_, gen), (_, values) in zip(gens, saved):
        gen.state.assign(np.asarray(values, dtype=keras.backend.standardize_dtype(gen.state.dtype)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    current().set_rng_state(state.get("backend"))
    if state.get("keras_global") is not None:
        from keras.src.random.seed_generator import global_seed_generator

        gen = global_seed_generator()
        gen.state.assign(np.asarray(state["keras_global"], dtype=keras.backend.standardize_dtype(gen.state.dtype)))
