"""keras_hub's Gemma (GemmaCausalLM, Gemma 1 and Gemma 2 options): the (1 + scale) RMSNorm gain, the
sqrt(hidden) embedding multiplier with its tied output, grouped-query heads; depth and width growth
verified by equal logits against keras_hub's own forward pass."""
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import growstage  # noqa: E402
from growstage.framework.adapters.graph import describe  # noqa: E402
from hub_lm import close, gemma, hand_stacked, logits, trained_like, values  # noqa: E402

BIG = dict(layers=4, hidden=64, nq=8, nkv=4, inter=128)
GEMMA2 = dict(use_post_attention_norm=True, use_post_ffw_norm=True, final_logit_soft_cap=30.0,
              attention_logit_soft_cap=50.0)


@pytest.fixture(scope="module")
def old():
    return trained_like(gemma())


def test_params_gain_offsets_and_the_tied_embedding(old):
    infos = describe(old)
    assert list(infos) == ["token_embedding", "decoder_block_0", "decoder_block_1", "final_normalization"]
    emb = infos["token_embedding"].params
    assert [(p.name, p.roles, p.size_power) for p in emb] == [("embeddings", ("vocab", "stream"), (1, 0.5))]
    final = infos["final_normalization"].params[0]
    assert (final.roles, final.offset, final.size_power) == (("stream_output",), 1.0, (0, -0.5))
    blk = {p.name: p for p in infos["decoder_block_0"].params}
    assert blk["attention/query/kernel"].split == [[2, 2], [32], [8]]
    assert blk["pre_ffw_norm/scale"].offset == 1.0
    assert {n for n, p in blk.items() if p.branch} == {"attention/attention_output/kernel", "ffw_linear/kernel"}


@pytest.mark.parametrize("fill", ["preserve", "double", "lemon"])
def test_depth_and_width_grow_with_equal_logits(old, fill):
    big, report = growstage.rebuild(lambda: gemma(**BIG), old, mode="subset", fill=fill, allow_new_layers=True)
    close(logits(old), logits(big))
    o, n = values(old), values(big)
    e, s = o["token_embedding/embeddings"], o["final_normalization/scale"]
    e2, s2 = n["token_embedding/embeddings"], n["final_normalization/scale"]
    if fill == "double":  # E' = dup(E) / sqrt(new/old), s' = (1 + s) / sqrt(new/old) - 1 on each copy
        np.testing.assert_allclose(e2, np.concatenate([e, e], 1) / np.sqrt(2), rtol=1e-6)
        np.testing.assert_allclose(s2, (1 + np.tile(s, 2)) / np.sqrt(2) - 1, rtol=1e-5, atol=1e-6)
    elif fill == "preserve":
        # the new stream units are zero; sqrt(new hidden) scales the old ones by sqrt(new/old), which keeps
        # every norm's mean square: E stays, the final norm's output grew by sqrt(new/old), which s' undoes
        assert np.array_equal(e2[:, :32], e) and not e2[:, 32:].any()
        np.testing.assert_allclose(s2[:32], (1 + s) / np.sqrt(2) - 1, rtol=1e-5, atol=1e-6)


def test_net2net_grows_kv_heads_and_groups_exactly(old):
    # hidden fixed: the grid map copies KV heads and query heads consistently (seeded random copies)
    big, _ = growstage.rebuild(lambda: gemma(nq=12, nkv=4, inter=96), old, mode="subset", fill="net2net",
                               fill_seed=3)
    close(logits(old), logits(big))


@pytest.mark.parametrize("fill", ["preserve", "lemon"])
def test_gemma2_post_norms_and_soft_caps(fill):
    small = trained_like(gemma(**GEMMA2))
    big, _ = growstage.rebuild(lambda: gemma(**BIG, **GEMMA2), small, mode="subset", fill=fill,
                               allow_new_layers=True)
    close(logits(small), logits(big))


def test_stacking_equals_a_hand_stacked_model(old):
    rename = growstage.stack_rename(growstage.snapshot(old), 2, 4, method="interleave", block="decoder_block_{i}")
    big, _ = growstage.rebuild(lambda: gemma(layers=4), old, mode="subset", rename=rename)
    ref = hand_stacked(old, gemma(layers=4, seed=5), [0, 0, 1, 1], "decoder_block_{i}")
    assert np.array_equal(logits(big), logits(ref))
