"""Function-preserving fills: the grown network computes what the small one did.

Outputs are compared on random inputs with dropout off; the bound is 1e-6 times
the output's scale in float32 (the fills do arithmetic: division, sqrt)."""
import keras
import numpy as np
import pytest

import growstage
import growstage.framework.optimizer
from growstage.core.growth import GrowthMap

L = keras.layers
FILLS = ["preserve", "net2net", "double"]


def _out(model, x):
    """The model's output as numpy on any backend (torch outputs carry autograd state)."""
    return keras.ops.convert_to_numpy(model(x))


def _close(a, b):
    scale = max(float(np.abs(a).max()), 1e-12)
    err = float(np.abs(a - b).max())
    assert err <= 1e-6 * scale, f"max |diff| {err:.3g} > 1e-6 x {scale:.3g}"


def mlp(width, depth, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((8,))
    h = x
    for i in range(1, depth + 1):
        h = L.Dense(width, activation="relu", name=f"h{i}")(h)
    return keras.Model(x, L.Dense(3, name="out")(h))


def blstm_res(n, depth, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((6, 5))
    h = L.Bidirectional(L.LSTM(n, return_sequences=True), name="blstm1")(x)
    for i in range(2, depth + 1):
        h = L.Add(name=f"res{i}")([h, L.Bidirectional(L.LSTM(n, return_sequences=True), name=f"blstm{i}")(h)])
    return keras.Model(x, L.Dense(7, name="out")(h))


def transformer(d, heads, ff, blocks=1, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((5, 6))
    h = L.Dense(d, name="embed")(x)
    for b in range(1, blocks + 1):
        a = L.LayerNormalization(name=f"ln1_{b}")(h)
        a = L.MultiHeadAttention(heads, 4, name=f"mha_{b}")(a, a)
        h = L.Add(name=f"add1_{b}")([h, a])
        f = L.LayerNormalization(name=f"ln2_{b}")(h)
        f = L.Dense(ff, activation="relu", name=f"ff1_{b}")(f)
        f = L.Dense(d, name=f"ff2_{b}")(f)
        h = L.Add(name=f"add2_{b}")([h, f])
    h = L.LayerNormalization(name="ln_final")(h)
    return keras.Model(x, L.Dense(4, name="out")(h))


def _grow(small, big, fill, **kw):
    rep = growstage.transfer(small, big, mode="subset", fill=fill, allow_new_layers=True, **kw)
    return rep


def _train_a_little(model, x, seed=1):
    keras.utils.set_random_seed(seed)
    y = np.random.default_rng(seed).normal(size=model.output_shape[1:]).astype("f4")
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, np.broadcast_to(y, (len(x),) + y.shape), epochs=3, verbose=0)


# builder, small args, big args, input shape, the start each new layer must get
CASES = {
    "mlp": (mlp, (16, 2), (32, 3), (16, 8), {"h3/kernel": "identity"}),
    "residual_blstm": (blstm_res, (4, 2), (8, 3), (3, 6, 5), {"blstm3/forward_layer/cell/kernel": "zeroed"}),
    "pre_ln_transformer": (transformer, (8, 2, 16), (8, 4, 32, 2), (3, 5, 6),
                           {"mha_2/attention_output/kernel": "zeroed", "ff2_2/kernel": "zeroed",
                            "ff1_2/kernel": "kept-init"}),
}


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("case", list(CASES))
def test_widen_and_deepen_keeps_the_function(case, fill):
    build, small_args, big_args, shape, starts = CASES[case]
    x = np.random.default_rng(0).normal(size=shape).astype("f4")
    small = build(*small_args)
    _train_a_little(small, x)  # trained weights, not just an init
    big = build(*big_args, seed=5)
    rep = _grow(small, big, fill)
    for target, action in starts.items():
        assert rep.row(target).action == action, target
    _close(_out(small, x), _out(big, x))


def test_transformer_model_width_doubles_exactly_and_others_say_they_cannot():
    x = np.random.default_rng(3).normal(size=(3, 5, 6)).astype("f4")
    small = transformer(8, 2, 16)
    _train_a_little(small, x)
    big = transformer(16, 4, 32, seed=8)
    _grow(small, big, "double")
    _close(_out(small, x), _out(big, x))
    for fill in ("preserve", "net2net"):
        p = growstage.plan(small, transformer(16, 4, 32, seed=8), mode="subset", fill=fill)
        assert any("ln1_1: LayerNormalization over a widened axis" in n for n in p.notes)
    # issue 27, item 10: strict_preserve makes it an error naming the layer and why
    with pytest.raises(growstage.PlanError, match=r"ln1_1: fill 'preserve' cannot preserve the function "
                                                  r"\(strict_preserve=True\): LayerNormalization over a widened axis"):
        growstage.plan(small, transformer(16, 4, 32, seed=8), mode="subset", fill="preserve", strict_preserve=True)
    growstage.plan(small, transformer(16, 4, 32, seed=8), mode="subset", fill="double", strict_preserve=True)


def test_strict_preserve_refuses_a_new_layer_that_cannot_start_as_the_identity():
    def build(deep):
        inp = keras.Input((4,))
        h = keras.layers.Dense(4, name="a")(inp)
        if deep:
            h = keras.layers.Dense(3, name="narrow")(h)  # not square: cannot start as the identity
        return keras.Model(inp, keras.layers.Dense(2, name="out")(h))

    small, big = build(False), build(True)
    p = growstage.plan(small, big, mode="subset", fill="preserve", allow_new_layers=True, ignore_missing=True)
    assert any(n.startswith("narrow: new layer: NOT function-preserving") and "strict_preserve=True" in n
               for n in p.notes)
    with pytest.raises(growstage.PlanError, match="narrow: fill 'preserve' cannot preserve the function"):
        growstage.plan(small, big, mode="subset", fill="preserve", allow_new_layers=True, ignore_missing=True,
                       strict_preserve=True)
    growstage.plan(small, big, mode="subset", fill="init", allow_new_layers=True, ignore_missing=True,
                   strict_preserve=True)  # not a preserving fill: nothing promised, nothing refused


def test_query_head_size_growth_keeps_attention_scores():
    x = np.random.default_rng(4).normal(size=(2, 5, 6)).astype("f4")

    def att(key_dim, seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((5, 6))
        return keras.Model(inp, L.MultiHeadAttention(2, key_dim, name="mha")(inp, inp))
    small, big = att(4, 0), att(8, 1)
    for fill in ("preserve", "net2net"):
        _grow(small, big, fill)
        _close(_out(small, x), _out(big, x))


def test_double_rejects_other_factors_and_net2net_needs_old_units():
    with pytest.raises(growstage.PlanError, match="fill 'double' needs each grown block exactly doubled"):
        growstage.plan(mlp(16, 2), mlp(24, 2), mode="subset", fill="double")


def test_adam_slots_follow_the_growth_map_entry_by_entry():
    x = np.random.default_rng(5).normal(size=(16, 8)).astype("f4")
    small = mlp(4, 1)
    _train_a_little(small, x)
    state = growstage.framework.optimizer.optimizer_state(small)
    big = mlp(8, 1, seed=3)
    big.compile(keras.optimizers.Adam(0.01), "mse")
    p = growstage.plan(small, big, mode="subset", fill="net2net", fill_seed=11)
    growstage.apply(p)
    growstage.framework.optimizer.transfer_optimizer_state(state, p, big)
    opt = big.optimizer
    slot = {id(v): i for i, v in enumerate(opt._trainable_variables)}
    g = GrowthMap.build([[4]], [[8]], consumer_axes=(), method="net2net", seed=11).axes[0]
    m_small, v_small = (state["slots"]["out"]["kernel"][f] for f in ("_momentums", "_velocities"))
    i = slot[id(big.get_layer("out").kernel)]
    m_big, v_big = opt._momentums[i].numpy(), opt._velocities[i].numpy()
    for j in range(8):  # out reads h1: its rows are the consumer axis, divided by the copy count
        k = g.count[j]
        np.testing.assert_allclose(m_big[j], m_small[g.index[j]] / k, rtol=1e-6)
        np.testing.assert_allclose(v_big[j], v_small[g.index[j]] / k**2, rtol=1e-6)
    i = slot[id(big.get_layer("h1").kernel)]  # incoming weights of copies: copied, not scaled
    m_h1 = state["slots"]["h1"]["kernel"]["_momentums"]
    assert np.array_equal(opt._momentums[i].numpy(), m_h1[:, g.index])
    assert int(opt.iterations.numpy()) == state["iterations"]


def test_net2net_noise_keeps_function_then_copies_diverge_and_loss_falls():
    x = np.random.default_rng(6).normal(size=(64, 8)).astype("f4")
    y = np.random.default_rng(7).normal(size=(64, 3)).astype("f4")
    small = mlp(8, 1)
    big = mlp(16, 1, seed=2)
    _grow(small, big, "net2net", fill_noise=0.05, fill_seed=3)
    _close(_out(small, x), _out(big, x))
    g = GrowthMap.build([[8]], [[16]], consumer_axes=(), method="net2net", seed=3).axes[0]
    dup = next(j for j in range(8, 16))
    orig = g.index[dup]
    k = big.get_layer("h1").kernel
    assert np.array_equal(k.numpy()[:, dup], k.numpy()[:, orig])  # identical incoming weights at first
    big.compile(keras.optimizers.Adam(0.01), "mse")
    before = float(big.evaluate(x, y, verbose=0))
    big.fit(x, y, epochs=5, batch_size=16, verbose=0)
    after = float(big.evaluate(x, y, verbose=0))
    assert np.isfinite(after) and after < before
    assert not np.array_equal(k.numpy()[:, dup], k.numpy()[:, orig])
