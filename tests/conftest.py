"""Shared model builders and an independent reference for block-wise growth."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

L = keras.layers


def pytest_configure(config):
    # the default (TensorFlow) run runs everything; the JAX and PyTorch passes deselect these
    # with -m "not tf_only" (TensorFlow checkpoints, tf.distribute, Keras 2 files, TF runtime hooks)
    config.addinivalue_line("markers", "tf_only: needs the TensorFlow Keras backend; "
                            "deselected in the other backends' passes with -m 'not tf_only'")


def build_blstm(width: int, depth: int = 2, n_in: int = 5, n_out: int = 7, seed: int = 0) -> keras.Model:
    """A BLSTM stack with a Dense on top reading both directions."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, n_in), name="features")
    h = x
    for i in range(1, depth + 1):
        h = L.Bidirectional(L.LSTM(width, return_sequences=True), name=f"blstm{i}")(h)
    y = L.Dense(n_out, name="out")(h)
    return keras.Model(x, y, name=f"blstm_{depth}x{width}")


def values(model) -> dict:
    """{variable path without the auto-named inner part: ndarray} via growstage-independent Keras API."""
    out = {}
    for layer in model.layers:
        for w in layer.weights:
            out[(layer.name, w.path.split("/", 1)[1])] = np.array(w.numpy())
    return out


def block_index_map(old_parts, new_parts):
    """For each new index along an axis: the old index it comes from, or -1.

    Written entry by entry, independently of growstage.resize, as the reference.
    """
    idx = []
    o_off = 0
    for o, n in zip(old_parts, new_parts):
        for k in range(n):
            idx.append(o_off + k if k < o else -1)
        o_off += o
    return np.array(idx, dtype=np.int64)


def expected_blockwise(old, init, old_split, new_split):
    maps = [block_index_map(o, n) for o, n in zip(old_split, new_split)]
    grids = np.meshgrid(*maps, indexing="ij")
    covered = np.ones(init.shape, dtype=bool)
    for g in grids:
        covered &= g >= 0
    if old.size == 0:
        return init.copy(), covered
    src = tuple(np.where(g >= 0, g, 0) for g in grids)
    return np.where(covered, old[src], init), covered


@pytest.fixture(autouse=True)
def _clear_session():
    yield
    keras.backend.clear_session()
