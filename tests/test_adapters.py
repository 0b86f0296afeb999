"""Every built-in adapter: names, split info, roles, and block-wise growth through the graph."""
import keras
import numpy as np
import pytest

import growstage
from conftest import L, expected_blockwise


def _grow_and_check(build, small, big, layer, checks):
    old, new = build(small, 1), build(big, 2)
    o, init = growstage.snapshot(old), growstage.snapshot(new)
    growstage.transfer(o, new, mode="subset")
    got = growstage.snapshot(new)
    for pname, (old_split, new_split) in checks.items():
        assert o[layer][pname].split == old_split, pname
        assert got[layer][pname].split == new_split, pname
        exp, _ = expected_blockwise(o[layer][pname].read(), init[layer][pname].read(), old_split, new_split)
        assert np.array_equal(got[layer][pname].read(), exp), pname
    return o, got


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_both_bias_layouts(reset_after):
    def build(n, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((None, 3))
        return keras.Model(x, L.GRU(n, reset_after=reset_after, name="enc")(x))
    bias = ([[1, 1], [2] * 3], [[1, 1], [5] * 3]) if reset_after else ([[2] * 3], [[5] * 3])
    _grow_and_check(build, 2, 5, "enc", {
        "cell/kernel": ([[3], [2] * 3], [[3], [5] * 3]),
        "cell/recurrent_kernel": ([[2], [2] * 3], [[5], [5] * 3]),
        "cell/bias": bias})


def test_simple_rnn_and_bidirectional_gru():
    def build(n, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((None, 3))
        h = L.Bidirectional(L.GRU(n, return_sequences=True), name="bgru")(x)
        return keras.Model(x, L.SimpleRNN(n, name="rnn")(h))
    _grow_and_check(build, 2, 3, "rnn", {"cell/kernel": ([[2, 2], [2]], [[3, 3], [3]]),
                                         "cell/recurrent_kernel": ([[2], [2]], [[3], [3]])})
    _grow_and_check(build, 2, 3, "bgru", {"backward_layer/cell/kernel": ([[3], [2] * 3], [[3], [3] * 3])})


def test_conv_embedding_norms():
    def build(n, seed):
        keras.utils.set_random_seed(seed)
        tok = keras.Input((8,), dtype="int32")
        h = L.Embedding(20, n, name="emb")(tok)
        h = L.Conv1D(n, 3, padding="same", name="conv1")(h)
        h = L.BatchNormalization(name="bn")(h)
        h = L.Reshape((8, n, 1), name="img")(h)
        h = L.Conv2D(n, (2, 2), name="conv2")(h)
        return keras.Model(tok, L.LayerNormalization(name="ln")(h))
    o, got = _grow_and_check(build, 3, 5, "conv1", {"kernel": ([[3], [3], [3]], [[3], [5], [5]])})
    _grow_and_check(build, 3, 5, "emb", {"embeddings": ([[20], [3]], [[20], [5]])})
    _grow_and_check(build, 3, 5, "conv2", {"kernel": ([[2], [2], [1], [3]], [[2], [2], [1], [5]])})
    _grow_and_check(build, 3, 5, "bn", {"moving_variance": ([[3]], [[5]]), "moving_mean": ([[3]], [[5]])})
    assert o["bn"]["moving_mean"].trainable is False
    assert got["conv2"]["kernel"].roles == ("spatial", "spatial", "input", "units")


def test_einsum_dense_input_axis_and_roles():
    def build(n, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((4, 6))
        return keras.Model(x, L.EinsumDense("abc,cde->abde", output_shape=(4, 2, n), bias_axes="de", name="ed")(x))
    o, _ = _grow_and_check(build, 3, 5, "ed", {"kernel": ([[6], [2], [3]], [[6], [2], [5]]), "bias": ([[2], [3]], [[2], [5]])})
    assert o["ed"]["kernel"].roles == ("input", "units", "units")


def test_unknown_layer_is_taken_whole_with_a_note_and_registration_hook_works():
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

        def call(self, x):
            return x * self.w

    def build(n, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((None, 3))
        h = L.Bidirectional(L.LSTM(n, return_sequences=True), name="blstm")(x)
        return keras.Model(x, Scale(name="gain")(h))

    snap = growstage.snapshot(build(2, 1))
    assert snap["gain"]["w"].split == [[4]]
    assert any("no adapter for Scale" in n for n in snap.notes)
    old, new = build(2, 1), build(2, 2)
    assert "note: gain: no adapter for Scale: params taken whole" in str(growstage.transfer(old, new))

    @growstage.register_adapter(Scale)
    def _scale(layer, in_split):
        return [growstage.ParamSpec("w", layer.w, [in_split], ("units",))]

    try:
        _grow_and_check(build, 2, 3, "gain", {"w": ([[2, 2]], [[3, 3]])})
    finally:
        growstage.unregister_adapter(Scale)


def test_nested_sub_model_names_are_qualified():
    inner_in = keras.Input((5,))
    inner = keras.Model(inner_in, L.Dense(4, name="proj")(inner_in), name="frontend")
    x = keras.Input((5,))
    m = keras.Model(x, L.Dense(2, name="out")(inner(x)))
    snap = growstage.snapshot(m)
    assert list(snap) == ["frontend/proj", "out"]
