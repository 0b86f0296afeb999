"""Issue 13: the built-in LM task and model, growth operators on it, optimizer state and learning rate at growth.

Preservation: the grown LM's logits on a fixed batch equal the small one's within
1e-5 x their scale (float32 arithmetic: divisions, sqrt, LayerNorm).  No test
asserts that growing saves compute: the benchmark measures that."""
import keras
import numpy as np
import pytest

import growstage
from growstage.core.growth import GrowthMap, consumer_axes, query_factor
from growstage.core.stacking import depth_map, stack_rename
from growstage.framework.optimizer import optimizer_state, transfer_optimizer_state
from growstage.lm import build_lm, stdlib_corpus, train_flops, val_windows, windows
from growstage.train.growth_lr import GrowthLR, at_growth

CTX = 8
X = np.random.default_rng(0).integers(0, 256, (3, CTX)).astype("int32")


def _out(model, x):
    """The model's output as numpy on any backend."""
    return keras.ops.convert_to_numpy(model(x))


def _close(a, b, bound=1e-5):
    scale = max(float(np.abs(a).max()), 1e-12)
    err = float(np.abs(a - b).max())
    assert err <= bound * scale, f"max |diff| {err:.3g} > {bound} x {scale:.3g}"


def trained(layers, d, heads, ff, seed=0):
    """An LM whose every weight (biases, LayerNorm, positions included) is non-trivial, like a trained one."""
    m = build_lm(layers, d, heads, ff, context=CTX, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for v in m.weights:
        v.assign(rng.normal(0.0, 0.3, v.shape).astype("f4") + (1.0 if v.path.endswith("gamma") else 0.0))
    return m


def test_corpus_is_fixed_split_by_file_and_hashed():
    a, b = stdlib_corpus(150_000), stdlib_corpus(150_000)
    assert a.sha256 == b.sha256 and np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert a.train.size + a.val.size <= 150_000 and a.val.size > 0
    assert not set(a.train_files) & set(a.val_files)
    assert a.train_files == sorted(a.train_files)
    assert stdlib_corpus(300_000).sha256 != a.sha256
    x, y = windows(a.train, np.random.default_rng(0), 4, 16)
    assert x.shape == y.shape == (4, 16) and np.array_equal(x[:, 1:], y[:, :-1])
    xv, _ = val_windows(a.val, 16, 5)
    assert np.array_equal(xv, val_windows(a.val, 16, 5)[0])


def test_model_names_are_stable_and_causal():
    m = build_lm(2, 16, 2, 32, context=CTX, seed=0)
    assert not [lay.name for lay in m.layers if growstage.framework.adapters.graph.is_auto_name(lay)]
    assert {"block1_attn", "block1_ff2", "pos", "embed", "head"} <= {lay.name for lay in m.layers}
    x2 = X.copy()
    x2[:, -1] = (x2[:, -1] + 1) % 256  # a later byte never changes an earlier step's logits
    assert np.array_equal(_out(m, X)[:, :-1], _out(m, x2)[:, :-1])


def test_train_flops_match_the_hand_formula():
    L_, d, h, ff, B = 3, 16, 4, 40, 5
    m = build_lm(L_, d, h, ff, context=CTX)
    tok = B * CTX
    per_block = 2 * tok * (4 * d * d + 2 * d * ff) + 2 * 2 * B * CTX * CTX * d
    fwd = L_ * per_block + 2 * tok * d * 256
    assert train_flops(m, B) == {"forward": fwd, "backward": 2 * fwd, "total": 3 * fwd}


WIDTH = [("double", 0.0), ("clone", 0.0), ("clone", 0.1), ("lemon", 0.0), ("lemon", 0.1)]


@pytest.mark.parametrize("fill,noise", WIDTH)
def test_width_operators_keep_the_logits(fill, noise):
    small = trained(2, 16, 2, 32)
    big = build_lm(2, 32, 4, 64, context=CTX, seed=7)
    growstage.transfer(small, big, mode="subset", fill=fill, fill_noise=noise, fill_seed=3)
    _close(_out(small, X), _out(big, X))
    if noise:  # the cancelling noise made the copies' outgoing weights differ
        k = big.get_layer("block0_ff2").kernel.numpy()
        assert not np.allclose(k[:32], k[32:])


@pytest.mark.parametrize("fill", ["preserve", "clone", "double"])
def test_depth_by_new_zeroed_blocks_keeps_the_logits_alone_and_with_width(fill):
    small = trained(1, 16, 2, 32)
    deep = build_lm(3, 16, 2, 32, context=CTX, seed=7)
    rep = growstage.transfer(small, deep, mode="subset", fill=fill, allow_new_layers=True)
    assert rep.row("block2_attn/attention_output/kernel").action == "zeroed"
    _close(_out(small, X), _out(deep, X))
    if fill != "preserve":
        both = build_lm(2, 32, 4, 64, context=CTX, seed=7)
        growstage.transfer(small, both, mode="subset", fill=fill, fill_noise=0.05, allow_new_layers=True)
        _close(_out(small, X), _out(both, X))


def test_net2net_noise_on_an_lm_is_not_claimed_preserving():
    small = trained(1, 16, 2, 32)
    p = growstage.plan(small, build_lm(1, 32, 4, 64, context=CTX), mode="subset", fill="net2net")
    assert any("block0_ln1: LayerNormalization over a widened axis" in n for n in p.notes)
    assert not any("LayerNormalization" in n for n in
                   growstage.plan(small, build_lm(1, 32, 4, 64, context=CTX), mode="subset", fill="clone").notes)


@pytest.mark.parametrize("method", ["stack", "interleave"])
def test_stacking_copies_each_trained_block_into_its_new_positions(method):
    small = trained(2, 16, 2, 32)
    big = build_lm(4, 16, 2, 32, context=CTX, seed=7)
    rename = stack_rename(growstage.snapshot(small), 2, 4, method=method)
    rep = growstage.transfer(small, big, mode="subset", rename=rename)
    for j, i in enumerate(depth_map(2, 4, method)):
        for part in ("ln1", "attn", "ln2", "ff1", "ff2"):
            for a, b in zip(small.get_layer(f"block{i}_{part}").weights, big.get_layer(f"block{j}_{part}").weights):
                assert np.array_equal(a.numpy(), b.numpy())
        assert rep.row(f"block{j}_ff1/kernel").source == f"block{i}_ff1/kernel"
    assert np.array_equal(small.get_layer("head").kernel.numpy(), big.get_layer("head").kernel.numpy())


def test_stacking_and_rename_errors_name_the_problem():
    with pytest.raises(growstage.GrowstageError, match="did you mean 'interleave'"):
        depth_map(2, 4, "interleaf")
    with pytest.raises(growstage.GrowstageError, match=r"no layers of blocks \[1\]"):
        stack_rename(["block0_ff1"], 2, 4)
    small, big = build_lm(1, 16, 2, 32, context=CTX), build_lm(2, 16, 2, 32, context=CTX)
    with pytest.raises(growstage.PlanError, match="'block1_ff1' is named by more than one source layer"):
        growstage.plan(small, big, mode="subset", rename={"block0_ff1": ["block1_ff1"], "head": ["block1_ff1"]},
                       allow_new_layers=True)
    with pytest.raises(growstage.PlanError, match="fill 'clone' clones each unit n times"):
        growstage.plan(small, build_lm(1, 24, 3, 48, context=CTX), mode="subset", fill="clone")


def test_growth_maps_read_roles_not_param_names():
    assert consumer_axes(("units", "gates")) == ()  # a recurrent kernel's rows only by their role
    assert consumer_axes(("recurrent", "gates")) == (0,)
    assert consumer_axes(("input_heads", "input_head_dim", "units")) == (0, 1)
    assert query_factor(("input", "heads", "head_dim"), [[4], [2], [4]], [[4], [2], [16]]) == 1.0
    assert query_factor(("heads", "query_head_dim"), [[2], [4]], [[2], [16]]) == 2.0
    att = build_lm(1, 16, 2, 32, context=CTX).get_layer("block0_attn")
    roles = {p.name: p.roles for p in growstage.framework.adapters.graph.layer_specs(att, [16])}
    assert roles["query/kernel"] == ("input", "heads", "query_head_dim")
    assert roles["key/kernel"] == ("input", "heads", "head_dim")
    assert roles["attention_output/kernel"] == ("input_heads", "input_head_dim", "units")


def _adam_state(model, steps=3):
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.roll(X, -1, axis=1)
    model.fit(X, y, epochs=steps, verbose=0)
    return optimizer_state(model)


def _slot(model, layer, param, fam):
    opt = model.optimizer
    i = [id(v) for v in opt._trainable_variables].index(id(getattr(model.get_layer(layer), param)))
    return getattr(opt, fam)[i].numpy()


@pytest.mark.parametrize("new_entries", ["copy", "zero"])
def test_adam_slots_after_stacking_entry_by_entry(new_entries):
    small = build_lm(2, 16, 2, 32, context=CTX, seed=0)
    state = _adam_state(small)
    big = build_lm(4, 16, 2, 32, context=CTX, seed=1)
    big.compile(keras.optimizers.Adam(0.01), "mse")
    p = growstage.plan(small, big, mode="subset", rename=stack_rename(growstage.snapshot(small), 2, 4))
    growstage.apply(p)
    transfer_optimizer_state(state, p, big, new_entries=new_entries)
    for j, i in enumerate(depth_map(2, 4, "stack")):
        for fam in ("_momentums", "_velocities"):
            got = _slot(big, f"block{j}_ff1", "kernel", fam)
            old = state["slots"][f"block{i}_ff1"]["kernel"][fam]
            want = old if (new_entries == "copy" or i == j) else np.zeros_like(old)
            assert np.array_equal(got, want), (j, fam)
    assert int(big.optimizer.iterations.numpy()) == state["iterations"]


def test_zero_new_entries_keeps_the_slots_of_a_renamed_layer():
    """A layer renamed one-to-one is the same layer under a new name, not a copy: its slots carry over."""
    def mlp(name):
        x = keras.Input((4,))
        return keras.Model(x, keras.layers.Dense(3, name="out")(keras.layers.Dense(5, name=name)(x)))

    old, new = mlp("enc"), mlp("encoder")
    old.compile(keras.optimizers.Adam(0.01), "mse")
    old.fit(np.ones((8, 4), "f4"), np.ones((8, 3), "f4"), epochs=2, verbose=0)
    state = optimizer_state(old)
    new.compile(keras.optimizers.Adam(0.01), "mse")
    p = growstage.plan(old, new, rename={"enc": "encoder"})
    growstage.apply(p)
    transfer_optimizer_state(state, p, new, new_entries="zero")
    for fam in ("_momentums", "_velocities"):
        want = state["slots"]["enc"]["kernel"][fam]
        assert np.abs(want).max() > 0 and np.array_equal(_slot(new, "encoder", "kernel", fam), want), fam


@pytest.mark.parametrize("fill,new_entries", [("clone", "copy"), ("lemon", "copy"), ("clone", "zero")])
def test_adam_slots_after_cloning_entry_by_entry(fill, new_entries):
    small = build_lm(1, 16, 2, 32, context=CTX, seed=0)
    state = _adam_state(small)
    big = build_lm(1, 32, 4, 64, context=CTX, seed=1)
    big.compile(keras.optimizers.Adam(0.01), "mse")
    p = growstage.plan(small, big, mode="subset", fill=fill, fill_seed=5)
    growstage.apply(p)
    transfer_optimizer_state(state, p, big, new_entries=new_entries)
    rows = GrowthMap.build([[32]], [[64]], consumer_axes=(0,), method=fill, seed=5).axes[0]  # ff2 reads ff1
    m_old, v_old = (state["slots"]["block0_ff2"]["kernel"][f] for f in ("_momentums", "_velocities"))
    m_new, v_new = (_slot(big, "block0_ff2", "kernel", f) for f in ("_momentums", "_velocities"))
    for j in range(64):  # rows: ff1's units, a consumer axis (divided); columns: own units (cloned)
        for k in range(32):
            jo, ko = rows.index[j], k % 16
            share = rows.share[j]
            kept = new_entries == "copy" or (j < 32 and k < 16)
            np.testing.assert_allclose(m_new[j, k], m_old[jo, ko] * share if kept else 0.0, rtol=1e-6)
            np.testing.assert_allclose(v_new[j, k], v_old[jo, ko] * share**2 if kept else 0.0, rtol=1e-6)
    assert fill != "clone" or np.allclose(rows.share, 0.5)
    assert fill != "lemon" or (len(set(np.round(rows.share, 6))) > 2 and np.allclose(
        np.bincount(rows.index, rows.share), 1.0))


def test_at_growth_keep_rewarm_rewind():
    base = keras.optimizers.schedules.PolynomialDecay(1.0, 100, 0.0)

    def opt_at(it):
        o = keras.optimizers.Adam(base)
        o.iterations.assign(it)
        return o
    o = opt_at(40)
    assert at_growth(o, "keep", global_step=40) == 0 and o._learning_rate is base
    o = opt_at(0)  # optimizer state reset: the schedule keeps its position
    assert at_growth(o, "keep", global_step=40) == 40 and float(o.learning_rate) == pytest.approx(0.6)
    o = opt_at(40)
    at_growth(o, "rewarm", warmup_steps=4, global_step=40)
    assert float(o.learning_rate) == pytest.approx(0.6 / 4)
    o.iterations.assign(43)
    assert float(o.learning_rate) == pytest.approx(0.57)
    o = opt_at(40)
    assert at_growth(o, "rewind", global_step=40) == -40 and float(o.learning_rate) == pytest.approx(1.0)
    assert isinstance(o._learning_rate, GrowthLR)
    with pytest.raises(growstage.GrowstageError, match="did you mean 'rewind'"):
        at_growth(o, "rewnd", global_step=0)


def _mlp(stage):
    keras.utils.set_random_seed(0)
    x = keras.Input((4,))
    h = keras.layers.Dense(stage.spec, activation="relu", name="h")(x)
    return keras.Model(x, keras.layers.Dense(1, name="out")(h))


@pytest.mark.parametrize("lr,state", [("rewind", "reset"), ("rewarm", "zero"), ("keep", "copy")])
def test_fit_applies_growth_options_per_stage(tmp_path, lr, state):
    x, y = np.ones((16, 4), "f4"), np.ones((16, 1), "f4")
    base = keras.optimizers.schedules.PolynomialDecay(1.0, 100, 0.0)
    sched = growstage.Schedule(_mlp, stages=[4, {"spec": 8, "fill": "net2net", "lr_at_growth": lr,
                                                 "warmup_steps": 10 if lr == "rewarm" else 0,
                                                 "optimizer_state": state}])
    hist = growstage.fit(sched, x, y, epochs=2, batch_size=4, log=None, seed=0, checkpoint_dir=str(tmp_path),
                         compile=lambda m, s: m.compile(keras.optimizers.SGD(base, momentum=0.9), "mse"))
    opt = hist.model.optimizer
    it = int(opt.iterations.numpy())
    assert it == (4 if state == "reset" else 8)  # 4 steps per epoch; a reset starts the count over
    want = {"rewind": base(4), "rewarm": base(8) * 5 / 10, "keep": base(8)}[lr]
    assert float(opt.learning_rate) == pytest.approx(float(want))
    resumed = growstage.fit(sched, x, y, epochs=2, batch_size=4, log=None, seed=0, checkpoint_dir=str(tmp_path),
                            resume=True, compile=lambda m, s: m.compile(keras.optimizers.SGD(base, momentum=0.9), "mse"))
    assert float(resumed.model.optimizer.learning_rate) == pytest.approx(float(want))


def test_growth_options_are_checked_with_suggestions():
    with pytest.raises(growstage.GrowstageError, match="did you mean 'rewarm'"):
        growstage.Schedule(_mlp, stages=[4, {"spec": 8, "lr_at_growth": "rewarn"}]).stage(1)
    with pytest.raises(growstage.GrowstageError, match="did you mean 'zero'"):
        growstage.Schedule(_mlp, stages=[4], optimizer_state="zeros").stage(0)
    with pytest.raises(growstage.GrowstageError, match="needs warmup_steps > 0"):
        growstage.Schedule(_mlp, stages=[4], lr_at_growth="rewarm").stage(0)


def test_a_rename_map_given_as_the_source_says_where_it_belongs():
    """stack_rename's result is a rename map; a user who passes it as the source is told to use rename=."""
    snap = {"block0": {"w": np.zeros(2)}, "block1": {"w": np.ones(2)}}
    rename = stack_rename(snap, 2, 4, method="stack", block="block{i}")
    with pytest.raises(growstage.GrowstageError, match="rename="):
        growstage.plan(rename, {"block0": {"w": np.zeros(2)}})
