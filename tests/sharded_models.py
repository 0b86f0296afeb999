"""Models laid out over a keras.distribution mesh of the host's forced devices, for the sharded tests.

The tests that use it need JAX and 8 devices: ``.ci/run`` runs them as
``XLA_FLAGS=--xla_force_host_platform_device_count=8 KERAS_BACKEND=jax python -m pytest tests/test_sharded*.py``;
elsewhere they skip, saying so.
"""
import contextlib
import os

import keras
import numpy as np
import pytest

L = keras.layers
N_DEVICES = 8


def need_mesh():
    """Skip unless JAX runs with 8 devices (forced host devices on CPU)."""
    if keras.backend.backend() != "jax":
        pytest.skip("sharded models need the JAX backend (KERAS_BACKEND=jax)")
    import jax

    if jax.device_count() < N_DEVICES:
        pytest.skip(f"needs {N_DEVICES} devices: XLA_FLAGS=--xla_force_host_platform_device_count={N_DEVICES}")


def model_parallel(shape=(2, 4), devices=None):
    """ModelParallel over a (batch, model) mesh: kernels sharded on "model" (heads, gates, units)."""
    import jax
    from keras import distribution as kd

    devs = list(devices if devices is not None else jax.devices())[: shape[0] * shape[1]]
    mesh = kd.DeviceMesh(shape, ["batch", "model"], devs)
    lm = kd.LayoutMap(mesh)
    lm["h/kernel"] = (None, "model")
    lm["h/bias"] = ("model",)
    lm["out/kernel"] = ("model", None)
    lm[r"att/(query|key|value)/kernel"] = (None, "model", None)
    lm[r"att/attention_output/kernel"] = ("model", None, None)
    lm[r"rnn/lstm_cell/kernel"] = (None, "model")
    lm[r"rnn/lstm_cell/recurrent_kernel"] = (None, "model")
    return kd.ModelParallel(layout_map=lm, batch_dim_name="batch")


@contextlib.contextmanager
def under(dist):
    """``dist`` (or no distribution: None) as the active one inside the block."""
    from keras import distribution as kd

    before = kd.distribution()
    kd.set_distribution(dist)
    try:
        yield
    finally:
        kd.set_distribution(before)


def mlp(n, compile=True, build_optimizer=False):
    x = keras.Input((8,), name="x")
    h = L.Dense(n, name="h", activation="tanh")(x)
    m = keras.Model(x, L.Dense(4, name="out")(h), name=f"mlp{n}")
    if compile:
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        if build_optimizer:
            m.optimizer.build(m.trainable_variables)
    return m


def attention(heads, compile=True):
    x = keras.Input((3, 8), name="x")
    y = L.MultiHeadAttention(heads, 4, name="att")(x, x)
    m = keras.Model(x, L.Dense(4, name="out")(y), name=f"att{heads}")
    if compile:
        m.compile(optimizer="adam", loss="mse")
    return m


def lstm(n, compile=True):
    x = keras.Input((3, 5), name="x")
    m = keras.Model(x, L.Dense(4, name="out")(L.LSTM(n, name="rnn")(x)), name=f"lstm{n}")
    if compile:
        m.compile(optimizer="adam", loss="mse")
    return m


def fill_values(model, seed=0):
    """Deterministic values in every param and optimizer slot (the same on any layout)."""
    rng = np.random.default_rng(seed)
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    slots = [v for v in getattr(model.optimizer, "variables", []) if len(v.shape)] if getattr(model, "optimizer", None) else []
    for v in list(model.weights) + slots:
        v.assign((rng.standard_normal(tuple(v.shape)) ** 2 + 0.1).astype(np.dtype(v.dtype)))
    return model


def weights_of(model):
    return {v.path: np.array(v.value) for v in model.weights}


def slots_of(model):
    return [np.array(v.value) for v in model.optimizer.variables]


def spec_of(variable):
    return tuple(getattr(variable.value.sharding, "spec", ()))
