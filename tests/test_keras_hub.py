"""keras_hub models (GPT-2, BERT): taken without allow_auto_names, every variable accounted for, the tied
embedding one param, and growth (depth, width) verified by equal logits against keras_hub's own forward pass.

Tiny configs, built offline (no preset): vocab 64, 2 layers, 2 heads, hidden 32, intermediate 64, seq 8.
Logits must stay within 1e-5 x max(1, |logits|) (the fills divide and halve in float32)."""
import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import growstage  # noqa: E402
from growstage.core.errors import AutoNameError, GrowstageError  # noqa: E402

SEQ, VOCAB = 8, 64


def gpt2(layers=2, hidden=32, heads=2, inter=64, seed=0):
    keras.utils.set_random_seed(seed)
    bb = keras_hub.models.GPT2Backbone(vocabulary_size=VOCAB, num_layers=layers, num_heads=heads, hidden_dim=hidden,
                                       intermediate_dim=inter, max_sequence_length=SEQ, dropout=0.0)
    return keras_hub.models.GPT2CausalLM(backbone=bb, preprocessor=None)


def gpt2_inputs(seed=1):
    rng = np.random.default_rng(seed)
    return {"token_ids": rng.integers(0, VOCAB, (2, SEQ)).astype("int32"),
            "padding_mask": np.ones((2, SEQ), "int32")}


def logits(model, x):
    return keras.ops.convert_to_numpy(model(x))


def close(a, b):
    err, bound = float(np.abs(a - b).max()), 1e-5 * max(1.0, float(np.abs(a).max()))
    assert err <= bound, f"logits moved by {err:.3g} > {bound:.3g}"


def trained_like(model, seed=3):
    """Give gains, biases and LayerNorms values away from their init, so a growth that ignores them fails."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.path.endswith(("gamma", "beta", "bias")):
            v.assign(rng.normal(1.0 if v.path.endswith("gamma") else 0.0, 0.3, v.shape).astype(v.dtype))
    return model


@pytest.fixture(scope="module")
def small_gpt2():
    return trained_like(gpt2())


def test_gpt2_snapshot_needs_no_auto_names_and_keys_follow_the_convention(small_gpt2):
    snap = growstage.snapshot(small_gpt2)
    assert list(snap)[:2] == ["token_embedding", "position_embedding"] and "layer_norm" in snap
    blk = snap["transformer_layer_0"]
    assert blk["self_attention/query/kernel"].shape == (32, 2, 16)
    assert blk["self_attention/attention_output/kernel"].split == [[2], [16], [32]]
    assert {"feedforward_intermediate_dense/kernel", "self_attention_layer_norm/gamma"} <= set(blk)
    assert not any("taken whole" in n for n in snap.notes)
    # the task lists the backbone's tied token_embedding again: one param, and every variable once
    assert len(snap.keys_flat()) == len({id(v) for v in small_gpt2.weights})
    bare = growstage.snapshot(small_gpt2.backbone)
    assert set(bare.keys_flat()) == set(snap.keys_flat())


def test_a_users_own_auto_named_layer_is_still_refused(small_gpt2):
    bb = small_gpt2.backbone
    out = keras.layers.Dense(3)(bb(bb.input))  # dense / dense_N: generated
    model = keras.Model(bb.input, out, name="mine")
    with pytest.raises(AutoNameError, match="'dense"):
        growstage.snapshot(model)
    named = keras.Model(bb.input, keras.layers.Dense(3, name="head")(bb(bb.input)), name="mine2")
    assert "head" in growstage.snapshot(named) and "transformer_layer_1" in growstage.snapshot(named)


def test_a_variable_the_adapter_does_not_list_is_an_error():
    class Two(keras.layers.Layer):
        def build(self, shape):
            self.a = self.add_weight(shape=(2,), name="a")
            self.b = self.add_weight(shape=(2,), name="b")

        def call(self, x):
            return x * self.a + self.b

    growstage.register_adapter(Two, lambda layer, s: [growstage.ParamSpec("a", layer.a, [[2]], ("units",))])
    try:
        x = keras.Input((2,))
        model = keras.Model(x, Two(name="scaled")(x))
        with pytest.raises(GrowstageError, match="'scaled' \\(Two\\): its adapter lists no param for variable scaled/b"):
            growstage.snapshot(model)
    finally:
        growstage.unregister_adapter(Two)


def test_untied_reversible_embedding_keeps_its_output_head():
    emb = keras_hub.layers.ReversibleEmbedding(VOCAB, 8, tie_weights=False, name="emb")
    x = keras.Input((None,), dtype="int32")
    model = keras.Model(x, emb(emb(x), reverse=True))
    snap = growstage.snapshot(model)
    assert sorted(snap["emb"]) == ["embeddings", "reverse_embeddings"]
    assert snap["emb"]["reverse_embeddings"].roles == ("input", "vocab")


def test_gpt2_same_size_rebuild_is_bit_identical(small_gpt2):
    x = gpt2_inputs()
    new, rep = growstage.rebuild(lambda: gpt2(seed=9), small_gpt2)
    assert rep.counts() == {"copied": 36}
    assert np.array_equal(logits(new, x), logits(small_gpt2, x))


@pytest.mark.parametrize("fill", ["preserve", "net2net", "double", "clone", "lemon"])
def test_gpt2_depth_2_to_4_new_blocks_start_as_the_identity(small_gpt2, fill):
    x = gpt2_inputs()
    new, rep = growstage.rebuild(lambda: gpt2(layers=4), small_gpt2, mode="subset", fill=fill, allow_new_layers=True)
    close(logits(small_gpt2, x), logits(new, x))
    zeroed = {r.target for r in rep.rows if r.action == "zeroed"}
    assert "transformer_layer_3/feedforward_output_dense/kernel" in zeroed
    assert "transformer_layer_2/self_attention/attention_output/bias" in zeroed
    assert "transformer_layer_2/self_attention/query/kernel" not in zeroed


@pytest.mark.parametrize("fill", ["double", "clone", "lemon"])
def test_gpt2_width_x2_with_heads_and_ffn_keeps_the_logits(small_gpt2, fill):
    x = gpt2_inputs()
    new, rep = growstage.rebuild(lambda: gpt2(hidden=64, heads=4, inter=128), small_gpt2, mode="subset", fill=fill)
    close(logits(small_gpt2, x), logits(new, x))
    assert rep.row("transformer_layer_0/self_attention/query/kernel").new_split == [[64], [4], [16]]
    assert any("tied output" in n for n in rep.notes)


@pytest.mark.parametrize("method", ["stack", "interleave"])
def test_gpt2_gstack_by_rename(small_gpt2, method):
    snap = growstage.snapshot(small_gpt2)
    rename = growstage.stack_rename(snap, 2, 4, method=method, block="transformer_layer_{i}")
    new, rep = growstage.rebuild(lambda: gpt2(layers=4), snap, rename=rename)
    src = {"stack": [0, 1, 0, 1], "interleave": [0, 0, 1, 1]}[method]
    for j, i in enumerate(src):
        got = keras.ops.convert_to_numpy(new.backbone.transformer_layers[j]._feedforward_output_dense.kernel)
        assert np.array_equal(got, snap[f"transformer_layer_{i}"]["feedforward_output_dense/kernel"].read())
