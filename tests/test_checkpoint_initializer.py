"""growstage.initializers.FromCheckpoint: one tensor from a checkpoint as a Keras initializer."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import growstage
from growstage.initializers import FromCheckpoint


@pytest.fixture
def ckpt(tmp_path):
    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Dense(2, name="enc")(x))
    path = tmp_path / "old.h5"
    growstage.save(growstage.snapshot(m), path)
    return str(path), m.get_layer("enc").kernel.numpy()


def test_exact_and_serialised_without_values(ckpt, tmp_path):
    path, kernel = ckpt
    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Dense(2, name="new", kernel_initializer=FromCheckpoint(path, "enc/kernel"))(x))
    assert np.array_equal(m.get_layer("new").kernel.numpy(), kernel)
    config = m.to_json()
    assert str(kernel[0, 0]) not in config and json.loads(config)  # the path and the name, no values
    with pytest.raises(growstage.GrowstageError, match="no model file known"):
        keras.models.model_from_json(config)  # a config alone is untrusted: its paths need trusted_paths
    with growstage.trusted_paths(path):
        again = keras.models.model_from_json(config)
    assert np.array_equal(again.get_layer("new").kernel.numpy(), kernel)
    m.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("new").kernel_initializer, FromCheckpoint)


def test_shape_modes(ckpt):
    path, kernel = ckpt
    with pytest.raises(growstage.ShapeError, match=r"'enc/kernel' .* has shape \(3, 2\), the variable \(3, 4\)"):
        keras.layers.Dense(4, kernel_initializer=FromCheckpoint(path, "enc/kernel")).build((None, 3))
    d = keras.layers.Dense(4, kernel_initializer=FromCheckpoint(path, "enc/kernel", mode="subset", fallback="ones"))
    d.build((None, 3))
    assert np.array_equal(d.kernel.numpy()[:, :2], kernel) and np.all(d.kernel.numpy()[:, 2:] == 1)
    init = FromCheckpoint(path, "enc/kernel", mode="ifpossible", fallback="zeros")
    d = keras.layers.Dense(4, kernel_initializer=init)
    d.build((None, 3))
    assert np.all(d.kernel.numpy() == 0)


def test_bad_arguments_are_named(ckpt):
    path, _ = ckpt
    with pytest.raises(growstage.GrowstageError, match="mode 'subst'; did you mean 'subset'"):
        FromCheckpoint(path, "enc/kernel", mode="subst")
    with pytest.raises(growstage.UnknownNameError, match="'enc/kernl'; did you mean 'enc/kernel'"):
        keras.layers.Dense(2, kernel_initializer=FromCheckpoint(path, "enc/kernl")).build((None, 3))


def test_frontend_model_saves_and_loads(tmp_path):
    import growstage.returnn as gr

    net = {"c": {"class": "conv", "filter_size": [3], "padding": "same", "n_out": 2, "activation": "abs"},
           "p": {"class": "pad", "axes": "T", "padding": [1, 2], "from": "c"},
           "w": {"class": "window", "window_size": 3, "from": "p"},
           "f": {"class": "merge_dims", "axes": "except_time", "from": "w"},
           "bw": {"class": "rec", "unit": "standardlstm", "n_out": 3, "direction": -1, "from": "f"},
           "output": {"class": "softmax", "n_out": 2, "from": "bw"}}
    m = gr.build_model(net, {"data": {"dim": 4}})
    x = np.random.default_rng(0).normal(size=(1, 5, 4)).astype("float32")
    m.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")  # safe mode: registered layers, no lambdas
    assert np.array_equal(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(m(x)))
