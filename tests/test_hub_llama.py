"""keras_hub's Llama family (LlamaCausalLM, MistralCausalLM, QwenCausalLM): per-head, per-gate params
with roles, depth and width growth verified by equal logits against keras_hub's own forward pass.

Width grows hidden size and query heads by one factor (keras_hub's Llama derives the head size as
hidden // heads; RoPE needs it fixed), KV heads and the intermediate size on their own."""
import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import growstage  # noqa: E402
from growstage.framework.adapters.graph import describe  # noqa: E402
from hub_lm import close, hand_stacked, llama_like, logits, trained_like, values  # noqa: E402

BIG = dict(layers=4, hidden=64, nq=8, nkv=4, inter=128)  # every axis grows at once, and depth


@pytest.fixture(scope="module")
def old():
    return trained_like(llama_like())


def test_params_are_per_head_per_gate_and_every_variable_is_listed(old):
    infos = describe(old)  # no allow_auto_names: keras_hub's names are stable
    assert list(infos) == ["token_embedding", "transformer_layer_0", "transformer_layer_1",
                           "sequence_output_layernorm"]
    assert not [n for i in infos.values() for n in i.notes if "taken whole" in n]
    emb = {p.name: p.roles for p in infos["token_embedding"].params}
    assert emb == {"embeddings": ("vocab", "stream"), "reverse_embeddings": ("stream_input", "vocab")}
    blk = {p.name: p for p in infos["transformer_layer_0"].params}
    assert sorted(blk) == sorted(v.path[len("transformer_layer_0/"):] for v in
                                 old.backbone.get_layer("transformer_layer_0").weights)
    q = blk["self_attention/query/kernel"]
    assert q.split == [[32], [2, 2], [8]] and q.roles == ("stream_input", "grouped_heads", "rope_head_dim")
    assert blk["self_attention/key/kernel"].roles == ("stream_input", "heads", "rope_head_dim")
    assert {n for n, p in blk.items() if p.branch} == {"self_attention/attention_output/kernel",
                                                       "feedforward_output_dense/kernel"}
    assert blk["feedforward_gate_dense/kernel"].roles == blk["feedforward_intermediate_dense/kernel"].roles


@pytest.mark.parametrize("family,fill", [("Llama", "preserve"), ("Llama", "double"), ("Llama", "lemon"),
                                         ("Mistral", "preserve")])
def test_depth_and_width_grow_with_equal_logits(family, fill):
    small = trained_like(llama_like(family))
    big, report = growstage.rebuild(lambda: llama_like(family, **BIG), small, mode="subset", fill=fill,
                                    allow_new_layers=True)
    close(logits(small), logits(big))
    assert report.counts()["zeroed"] == 4  # two new blocks: attention output and down projection each


@pytest.mark.parametrize("fill", ["preserve", "clone"])
def test_tied_output_qwen_grows_with_equal_logits(fill):
    small = trained_like(llama_like("Qwen", tie_word_embeddings=True))
    infos = describe(small)
    assert [p.name for p in infos["token_embedding"].params] == ["embeddings"]  # tied: one param
    assert infos["sequence_output_layernorm"].params[0].roles == ("stream_output",)
    big, _ = growstage.rebuild(lambda: llama_like("Qwen", tie_word_embeddings=True, **BIG), small, mode="subset",
                               fill=fill, allow_new_layers=True)
    close(logits(small), logits(big))


def test_query_groups_grow_with_kv_heads_fixed(old):
    # 2 KV heads, 2 -> 4 query heads per group: each copied query head keeps its KV head
    big, _ = growstage.rebuild(lambda: llama_like(hidden=64, nq=8, nkv=2), old, mode="subset", fill="double")
    close(logits(old), logits(big))
    q = values(big)["transformer_layer_0/self_attention/query/kernel"]
    q_old = values(old)["transformer_layer_0/self_attention/query/kernel"]
    assert np.array_equal(q[:32, [0, 1, 4, 5]], q_old)  # block diagonal: old heads read the first copy


def test_net2net_exact_on_the_ffn_and_noted_on_the_stream(old):
    big, _ = growstage.rebuild(lambda: llama_like(inter=128), old, mode="subset", fill="net2net")
    close(logits(old), logits(big))
    p = growstage.plan(old, llama_like(hidden=64, nq=8), mode="subset", fill="net2net")
    assert any("RMSNorm over a widened stream" in n for n in p.notes)


@pytest.mark.parametrize("method", ["stack", "interleave"])
def test_stacking_equals_a_hand_stacked_model(old, method):
    rename = growstage.stack_rename(growstage.snapshot(old), 2, 4, method=method, block="transformer_layer_{i}")
    big, _ = growstage.rebuild(lambda: llama_like(layers=4), old, mode="subset", rename=rename)
    order = [0, 1, 0, 1] if method == "stack" else [0, 0, 1, 1]
    ref = hand_stacked(old, llama_like(layers=4, seed=5), order, "transformer_layer_{i}")
    assert np.array_equal(logits(big), logits(ref))


def test_a_head_size_change_under_rope_is_refused(old):
    with pytest.raises(growstage.PlanError, match="under RoPE"):
        growstage.plan(old, llama_like(hidden=64), mode="subset", fill="preserve")  # head size 8 -> 16


def test_init_blocks_keeps_the_old_entries(old):
    big, report = growstage.rebuild(lambda: llama_like(**BIG), old, mode="subset", fill="init-blocks",
                                    allow_new_layers=True)
    assert report.counts()["padded"] == 21
    q, q_old = (values(m)["transformer_layer_1/self_attention/query/kernel"] for m in (big, old))
    assert np.array_equal(q[:32, :4], q_old)  # KV heads 0 and 1 keep their query groups; 2 and 3 are new


def adam_with_state(model, seed=7):
    """``model`` compiled with Adam whose slots hold one step of random gradients (no fit: cheap)."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    grads = [keras.ops.convert_to_tensor(rng.normal(size=tuple(v.shape)).astype("float32"))
             for v in model.trainable_variables]
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return model


def slots(model, suffix):
    opt = model.optimizer
    i = next(i for i, v in enumerate(model.trainable_variables) if v.path.endswith(suffix))
    return [keras.ops.convert_to_numpy(getattr(opt, f)[i]) for f in ("_momentums", "_velocities")]


def test_adam_slots_follow_the_growth():
    small = adam_with_state(llama_like())
    # BIG's widths, 2 layers: the forward pass's shapes are those of the tests above (JAX compiles once)
    big, report = growstage.rebuild(lambda: llama_like(hidden=64, nq=8, nkv=4, inter=128), small, mode="subset",
                                    fill="double")
    big.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counts = growstage.transfer_optimizer(small, big, report)
    assert counts["slots_zero"] == 0
    (m, v), (m2, v2) = slots(small, "reverse_embeddings"), slots(big, "reverse_embeddings")
    # the output projection reads the doubled stream: each copy of a row carries half, squared for v
    np.testing.assert_allclose(m2, np.concatenate([m, m]) / 2, rtol=1e-6)
    np.testing.assert_allclose(v2, np.concatenate([v, v]) / 4, rtol=1e-6)
    (m, _), (m2, _) = slots(small, "token_embedding/embeddings"), slots(big, "token_embedding/embeddings")
    assert np.array_equal(m2, np.concatenate([m, m], axis=1))  # the stream's writer: copied
