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
    assert not any("tied output" in n for n in rep.notes), rep.notes  # no width grows: the rule does not act


def test_the_tied_output_note_appears_only_when_the_width_grows(small_gpt2):
    deeper = growstage.plan(small_gpt2, gpt2(layers=4), mode="subset", allow_new_layers=True)
    assert not any("tied output" in n for n in deeper.notes), deeper.notes
    wider = growstage.plan(small_gpt2, gpt2(hidden=64, heads=4, inter=128), mode="subset", fill="double")
    assert [n for n in wider.notes if "tied output" in n] == [
        "layer_norm: feeds the tied output embedding: its gain and bias are divided among copied hidden units, "
        "so the logits stay exact when the width grows by double, clone or lemon"]


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


def test_gpt2_width_init_blocks_copies_the_old_entries_and_draws_the_new(small_gpt2):
    new, rep = growstage.rebuild(lambda: gpt2(hidden=64, heads=4, inter=128), small_gpt2, mode="subset",
                                 fill="init-blocks")
    old_q = keras.ops.convert_to_numpy(small_gpt2.backbone.transformer_layers[0]._self_attention_layer._query_dense.kernel)
    new_q = keras.ops.convert_to_numpy(new.backbone.transformer_layers[0]._self_attention_layer._query_dense.kernel)
    assert np.array_equal(new_q[:32, :2], old_q) and new_q[32:].std() > 0
    assert any("init-blocks" in n for n in rep.notes)  # drawn per block (or, on PyTorch, the fallback to init)


@pytest.mark.parametrize("method", ["stack", "interleave"])
def test_gpt2_gstack_by_rename(small_gpt2, method):
    snap = growstage.snapshot(small_gpt2)
    rename = growstage.stack_rename(snap, 2, 4, method=method, block="transformer_layer_{i}")
    new, rep = growstage.rebuild(lambda: gpt2(layers=4), snap, rename=rename)
    src = {"stack": [0, 1, 0, 1], "interleave": [0, 0, 1, 1]}[method]
    for j, i in enumerate(src):
        got = keras.ops.convert_to_numpy(new.backbone.transformer_layers[j]._feedforward_output_dense.kernel)
        assert np.array_equal(got, snap[f"transformer_layer_{i}"]["feedforward_output_dense/kernel"].read())


def test_gpt2_adam_slots_follow_the_width_growth():
    from growstage.framework.optimizer import optimizer_state

    def compiled(**kw):
        m = gpt2(**kw)
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[])
        return m

    old = compiled()
    x = gpt2_inputs()
    old.fit(x, np.roll(x["token_ids"], -1, axis=1), epochs=1, batch_size=2, verbose=0)
    new, rep = growstage.rebuild(lambda: compiled(hidden=64, heads=4, inter=128), old, mode="subset", fill="double")
    growstage.transfer_optimizer(old, new, rep)
    a, b = optimizer_state(old)["slots"], optimizer_state(new)["slots"]
    m_old, v_old = a["layer_norm"]["gamma"]["_momentums"], a["layer_norm"]["gamma"]["_velocities"]
    # the tied output's LayerNorm gain is halved among its two copies: first moments / 2, second / 4
    np.testing.assert_allclose(b["layer_norm"]["gamma"]["_momentums"], np.tile(m_old, 2) / 2, rtol=1e-6)
    np.testing.assert_allclose(b["layer_norm"]["gamma"]["_velocities"], np.tile(v_old, 2) / 4, rtol=1e-6)
    emb = a["token_embedding"]["embeddings"]["_momentums"]
    assert np.array_equal(b["token_embedding"]["embeddings"]["_momentums"], np.tile(emb, (1, 2)))
    q = b["transformer_layer_0"]["self_attention/query/kernel"]["_momentums"]
    assert np.array_equal(q[32:, 2:], a["transformer_layer_0"]["self_attention/query/kernel"]["_momentums"])
    assert not q[:32, 2:].any()  # double: block-diagonal, the new heads read the second copy only


def bert(layers=2, hidden=32, heads=2, inter=64, task="classifier", seed=0):
    keras.utils.set_random_seed(seed)
    bb = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=layers, num_heads=heads, hidden_dim=hidden,
                                       intermediate_dim=inter, max_sequence_length=SEQ, num_segments=2, dropout=0.0)
    if task == "classifier":
        return keras_hub.models.BertTextClassifier(backbone=bb, num_classes=3, preprocessor=None, dropout=0.0)
    return keras_hub.models.BertMaskedLM(backbone=bb, preprocessor=None)


def bert_inputs(task, seed=2):
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(0, VOCAB, (2, SEQ)).astype("int32"),
         "segment_ids": rng.integers(0, 2, (2, SEQ)).astype("int32"), "padding_mask": np.ones((2, SEQ), "int32")}
    if task == "masked_lm":
        x["mask_positions"] = np.array([[1, 3], [2, 5]], "int32")
    return x


@pytest.fixture(scope="module", params=["classifier", "masked_lm"])
def small_bert(request):
    return request.param, trained_like(bert(task=request.param))


def test_bert_keys_and_the_tied_mlm_head(small_bert):
    task, model = small_bert
    snap = growstage.snapshot(model)
    assert {"segment_embedding", "embeddings_layer_norm", "pooled_dense"} <= set(snap)
    assert snap["transformer_layer_1"]["self_attention_layer/attention_output/kernel"].shape == (2, 16, 32)
    assert len(snap.keys_flat()) == len({id(v) for v in model.weights})
    if task == "masked_lm":  # the head reads token_embedding/embeddings, which it does not hold again
        assert sorted(snap["mlm_head"]) == ["intermediate_dense/bias", "intermediate_dense/kernel",
                                            "intermediate_layer_norm/beta", "intermediate_layer_norm/gamma",
                                            "output_bias"]
    x = bert_inputs(task)
    new, rep = growstage.rebuild(lambda: bert(task=task, seed=5), model)
    assert np.array_equal(logits(new, x), logits(model, x))


@pytest.mark.parametrize("fill", ["double", "clone", "lemon"])
def test_bert_width_x2_keeps_the_logits(small_bert, fill):
    task, model = small_bert
    x = bert_inputs(task)
    new, _ = growstage.rebuild(lambda: bert(hidden=64, heads=4, inter=128, task=task), model, mode="subset", fill=fill)
    close(logits(model, x), logits(new, x))


@pytest.mark.parametrize("fill", ["preserve", "double"])
def test_bert_post_ln_depth_2_to_4_hands_the_output_norm_over(small_bert, fill):
    task, model = small_bert
    x = bert_inputs(task)
    new, rep = growstage.rebuild(lambda: bert(layers=4, task=task), model, mode="subset", fill=fill,
                                 allow_new_layers=True)
    close(logits(model, x), logits(new, x))
    assert rep.row("transformer_layer_1/feedforward_layer_norm/gamma").action == "identity"
    moved = rep.row("transformer_layer_3/feedforward_layer_norm/beta")
    assert moved.action == "copied" and moved.source == "transformer_layer_1/feedforward_layer_norm/beta"
    assert rep.row("transformer_layer_2/feedforward_layer_norm/gamma").action == "identity"
    assert rep.row("transformer_layer_2/self_attention_layer/attention_output/kernel").action == "zeroed"
    assert np.array_equal(keras.ops.convert_to_numpy(new.backbone.transformer_layers[1]._feedforward_layer_norm.gamma),
                          np.ones(32, "float32"))


def test_bert_gstack_by_rename(small_bert):
    task, model = small_bert
    snap = growstage.snapshot(model)
    rename = growstage.stack_rename(snap, 2, 4, method="interleave", block="transformer_layer_{i}")
    new, rep = growstage.rebuild(lambda: bert(layers=4, task=task), snap, rename=rename)
    assert set(rep.counts()) == {"copied"}  # G_stack: every block a copy of a trained one


def _grow_gpt2(checkpoint_dir, epochs, resume=False):
    def build(stage):
        return gpt2(layers=stage.spec)

    def compile_(model, stage):
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=[])

    rng = np.random.default_rng(4)
    tokens = rng.integers(0, VOCAB, (8, SEQ + 1)).astype("int32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((8, SEQ), "int32")}
    sched = growstage.Schedule(build, stages=[2, 4], fill="preserve")
    return growstage.fit(sched, x, tokens[:, 1:], epochs=epochs, compile=compile_, seed=0, batch_size=4, shuffle=False,
                         checkpoint_dir=str(checkpoint_dir), resume=resume, log=None)


@pytest.mark.tf_only
def test_fit_grows_gpt2_2_to_4_layers_and_a_resumed_run_is_bit_identical(tmp_path):
    full = _grow_gpt2(tmp_path / "a", epochs=2)  # epoch 0: 2 layers, epoch 1: grown to 4
    _grow_gpt2(tmp_path / "b", epochs=1)  # stopped after epoch 0
    resumed = _grow_gpt2(tmp_path / "b", epochs=2, resume=True)  # grows right after resuming
    assert len(full.model.backbone.transformer_layers) == 4 and full.rebuilds == 1
    grown = full.transitions[-1]["report"]
    assert grown.row("transformer_layer_3/feedforward_output_dense/kernel").action == "zeroed"
    a, b = growstage.snapshot(full.model), growstage.snapshot(resumed.model)
    assert a.keys_flat() == b.keys_flat() and resumed.resumed_from.endswith("epoch-0000.h5")
    for key, prm in a.flat().items():
        assert np.array_equal(prm.read(), b.flat()[key].read()), key


def test_growstage_works_without_keras_hub():
    import subprocess
    import sys
    code = ("import sys; sys.modules['keras_hub'] = None\n"  # as if not installed: `import keras_hub` fails
            "import keras, growstage\n"
            "x = keras.Input((3,)); m = keras.Model(x, keras.layers.Dense(2, name='out')(x))\n"
            "print(sorted(growstage.snapshot(m)['out']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("['bias', 'kernel']")
