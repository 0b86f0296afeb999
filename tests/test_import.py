"""Loading part of a checkpoint: init_from_checkpoint against TensorFlow's own,
rename rules, preload_from_files, a nested sub-model, TF1 LSTM conversion, CLI."""
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import growstage
from growstage.cli import main
from growstage.core.errors import GrowstageError, PlanError

from test_readers import _tf1_save

L = keras.layers

CKPT_SHAPES = {"old/enc/kernel": (3, 4), "old/enc/bias": (4,), "old/out/kernel": (4, 2), "old/out/bias": (2,),
               "old/w": (6, 5), "w": (6, 5), "pre/out/kernel": (4, 2)}


@pytest.fixture(scope="module")
def tf1_ckpt(tmp_path_factory):
    def make():
        return [tf.compat.v1.get_variable(n, shape=s) for n, s in CKPT_SHAPES.items()]
    prefix, _ = _tf1_save(tmp_path_factory.mktemp("ck") / "model", make)
    return prefix


def _tf_reference(prefix, assignment_map):
    """Values TensorFlow's own init_from_checkpoint gives a TF1 graph with the Keras model's variable names."""
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(2)
        for name, shape in (("enc/kernel", (3, 4)), ("enc/bias", (4,)), ("out/kernel", (4, 2)), ("out/bias", (2,))):
            tf.compat.v1.get_variable(name, shape=shape)
        tf.compat.v1.get_variable("w", shape=(6, 5), partitioner=tf.compat.v1.fixed_size_partitioner(3))
        tf.compat.v1.train.init_from_checkpoint(prefix, assignment_map)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables()}


class Parts(L.Layer):
    """A variable stored as three partitions ``w/part_0..2``, as a TF1 partitioner makes them."""

    def build(self, _):
        self.parts = [self.add_weight(shape=(2, 5), name=f"part_{i}") for i in range(3)]

    def call(self, x):
        return x


def _keras_target():
    x = keras.Input((3,))
    h = L.Dense(4, name="enc")(x)
    y = L.Dense(2, name="out")(h)
    y = Parts(name="w")(y)
    return keras.Model(x, y)


MAPS = [
    {"old/": "/"},
    {"old/enc/": "enc/", "w": "w"},
    {"old/enc/kernel": "enc/kernel", "pre/out/kernel": "out/kernel", "old/w": "w"},
    {"old/": "/", "pre/out/kernel": "out/kernel"},
    {"old/w": "w", "old/enc/": "enc/"},
]


@pytest.mark.parametrize("amap", MAPS, ids=[str(i) for i in range(len(MAPS))])
def test_init_from_checkpoint_equals_tensorflows(tf1_ckpt, amap):
    ref = _tf_reference(tf1_ckpt, amap)
    model = _keras_target()
    before = {v.path: v.numpy().copy() for v in model.variables}
    report = growstage.init_from_checkpoint(tf1_ckpt, amap, model)
    written = {r.target for r in report.rows}
    assert not any(t.startswith("/") for t in written)
    for v in model.variables:
        base = v.path.rsplit("/part_", 1)[0]
        if base in written:
            assert np.array_equal(v.numpy(), ref[v.path]), v.path
        else:
            assert np.array_equal(v.numpy(), before[v.path]), f"{v.path} should be untouched"
    assert written  # every map above selects something


def test_init_from_checkpoint_errors_list_everything_and_change_nothing(tf1_ckpt):
    model = _keras_target()
    before = [v.numpy().copy() for v in model.variables]
    with pytest.raises(PlanError) as e:
        growstage.init_from_checkpoint(tf1_ckpt, {"old/enc/kernl": "enc/kernel", "nope/": "enc/", "x/": "nowhere/"}, model)
    msg = str(e.value)
    assert "'old/enc/kernl' is not in" in msg and "did you mean 'old/enc/kernel'" in msg
    assert "'nope/kernel' (for 'enc/kernel') is not in" in msg and "covers no param" in msg
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))


def _npz(path, arrays):
    np.savez(path, **arrays)
    return str(path)


def test_rules_regex_prefix_scopes_and_one_tensor_many_targets(tmp_path):
    x = keras.Input((3,))
    h = L.Dense(4, name="enc_blstm0")(x)
    h = L.Dense(4, name="enc_blstm1")(h)
    m = keras.Model(x, [L.Embedding(5, 4, name="src_emb")(x), L.Embedding(5, 4, name="tgt_emb")(x), h])
    rng = np.random.default_rng(0)
    arrays = {"model/lstm0/kernel": rng.random((3, 4), "f4"), "model/lstm0/bias": rng.random(4, "f4"),
              "model/lstm1/kernel": rng.random((4, 4), "f4"), "model/lstm1/bias": rng.random(4, "f4"),
              "model/emb/W": rng.random((5, 4), "f4"), "model/global_step": np.int64(7)}
    path = _npz(tmp_path / "c.npz", arrays)
    rules = growstage.Rules(strip_prefix="model/", regex=[(r"lstm(\d)/(.*)", r"blstm\1/\2")], add_prefix="enc_",
                            exact={"model/emb/W": ["src_emb/embeddings", "tgt_emb/embeddings"]},
                            ignore_params=["model/global_step"])
    rep = growstage.transfer(path, m, rules=rules)
    assert rep.counts() == {"copied": 6}
    assert np.array_equal(m.get_layer("enc_blstm1").kernel.numpy(), arrays["model/lstm1/kernel"])
    for name in ("src_emb", "tgt_emb"):
        assert np.array_equal(m.get_layer(name).embeddings.numpy(), arrays["model/emb/W"])
    with pytest.raises(PlanError, match=r"rule regex 'gru\(\\\\d\)' matched no name"):
        growstage.plan(path, m, rules=dataclasses.replace(rules, regex=[(r"gru(\d)", "x")]))
    with pytest.raises(PlanError, match="both map to"):
        growstage.Rules(exact={"a": "t", "b": "t"}).apply(["a", "b"])
    with pytest.raises(GrowstageError, match="unknown rule 'strip_prefx'; did you mean 'strip_prefix'"):
        growstage.plan(path, m, rules={"strip_prefx": "model/"})


def test_custom_missing_load_func_fills_what_nothing_else_does(tmp_path):
    x = keras.Input((3,))
    m = keras.Model(x, L.Dense(2, name="out")(x))
    path = _npz(tmp_path / "c.npz", {"out/kernel": np.ones((3, 2), "f4")})
    seen = []

    def missing(name, shape, reader):
        seen.append((name, shape, sorted(reader)))
        return np.full(shape, 5, "f4") if name == "out/bias" else None
    growstage.transfer(path, m, custom_missing_load_func=missing)
    assert seen == [("out/bias", (2,), ["out/kernel"])]
    assert m.get_layer("out").bias.numpy().tolist() == [5.0, 5.0]


def _two_dense(prefix=""):
    x = keras.Input((3,))
    h = L.Dense(4, name=f"{prefix}a")(x)
    return keras.Model(x, L.Dense(2, name=f"{prefix}b")(h))


def test_preload_order_prefix_and_init_for_train(tmp_path):
    one, two = _two_dense(), _two_dense()
    p1, p2 = str(tmp_path / "one.h5"), str(tmp_path / "two.h5")
    growstage.save(growstage.snapshot(one), p1)
    growstage.save(growstage.snapshot(two), p2)
    target = _two_dense("enc_")
    init = {v.path: v.numpy().copy() for v in target.variables}
    cfg = {"b_second": {"filename": p2, "prefix": "enc_", "init_for_train": True},
           "a_first": {"filename": p1, "prefix": "enc_", "init_for_train": True, "ignore_params": ["enc_b/bias"]}}
    # outside training an init_for_train entry does not apply (an error naming the filter); when resuming neither
    with pytest.raises(GrowstageError, match="init_for_train=True.*pass training=True"):
        growstage.preload(target, cfg)
    assert growstage.preload(target, cfg, training=True, resuming=True).rows == []
    assert all(np.array_equal(init[v.path], v.numpy()) for v in target.variables)
    rep = growstage.preload(target, cfg, training=True)
    assert rep.counts() == {"copied": 4, "ignored": 4}  # ignored: a_first's enc_b/bias, and the three b_second finds set
    # a_first sorts first and wins for what it set; b_second only sets the bias a_first ignored
    assert np.array_equal(target.get_layer("enc_a").kernel.numpy(), one.get_layer("a").kernel.numpy())
    assert np.array_equal(target.get_layer("enc_b").kernel.numpy(), one.get_layer("b").kernel.numpy())
    assert np.array_equal(target.get_layer("enc_b").bias.numpy(), two.get_layer("b").bias.numpy())
    with pytest.raises(GrowstageError, match="unknown key 'ignore_param'; did you mean 'ignore_params'"):
        growstage.preload(target, {"x": {"filename": p1, "ignore_param": []}})
    with pytest.raises(PlanError, match="has no 'zz_a/kernel'"):
        growstage.preload(target, {"x": {"filename": p1, "var_name_mapping": {"enc_a/kernel": "zz_a/kernel"},
                                         "prefix": "enc_"}})


def _conv_net():
    x = keras.Input((16, 3))
    h = L.Conv1D(8, 3, name="conv1", padding="same")(x)
    h = L.Conv1D(8, 3, name="conv2", padding="same")(h)
    return keras.Model(x, L.Dense(4, name="out")(h), name="old")


def test_sub_model_loaded_from_top_level_names(tmp_path):
    old = _conv_net()
    path = str(tmp_path / "old.weights.h5")
    old.save_weights(path)
    x = keras.Input((16, 3))
    c = keras.Input((16, 3))
    ch = L.Conv1D(8, 3, name="conv1", padding="same")(c)
    ch = L.Conv1D(8, 3, name="conv2", padding="same")(ch)
    conv_layers = keras.Model(c, ch, name="conv_layers")
    h = L.Bidirectional(L.LSTM(5, return_sequences=True), name="blstm")(conv_layers(x))
    new = keras.Model(x, L.Dense(4, name="out2")(h))
    blstm_before = [w.numpy().copy() for w in new.get_layer("blstm").weights]
    rep = growstage.transfer(path, new.get_layer("conv_layers"), source_model=old, ignore=["out"])
    assert rep.counts() == {"copied": 4, "ignored": 2}
    # the same through preload with a prefix on the parent model's nested names
    new2 = keras.models.clone_model(new)
    growstage.preload(new2, {"convs": {"filename": path, "prefix": "conv_layers/"}})
    for m in (new, new2):
        for lname in ("conv1", "conv2"):
            got = m.get_layer("conv_layers").get_layer(lname)
            assert np.array_equal(got.kernel.numpy(), old.get_layer(lname).kernel.numpy())
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(blstm_before, new.get_layer("blstm").weights))


@pytest.mark.tf_only
@pytest.mark.parametrize("forget_bias", [1.0, 0.0])
def test_tf1_lstm_cell_checkpoint_into_keras_lstm(tmp_path, forget_bias):
    from tf_keras.src.layers.rnn.legacy_cells import LSTMCell

    n_in, n, steps = 3, 4, 5
    x = np.random.default_rng(1).normal(size=(2, steps, n_in)).astype("f4")
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(3)
        cell = LSTMCell(n, forget_bias=forget_bias)
        out, _ = tf.compat.v1.nn.dynamic_rnn(cell, tf.constant(x), dtype=tf.float32)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            # a non-zero bias so that the gate order and forget_bias both matter
            for v in tf.compat.v1.global_variables():
                if v.op.name.endswith("bias"):
                    v.load(np.linspace(-1, 1, 4 * n).astype("f4"), sess)
            expected = sess.run(out)
            prefix = tf.compat.v1.train.Saver().save(sess, str(tmp_path / "tf1"))
    with growstage.io.readers.open_checkpoint(prefix) as r:
        values = growstage.tf1_lstm_to_keras(r.read("rnn/lstm_cell/kernel"), r.read("rnn/lstm_cell/bias"),
                                             forget_bias=forget_bias)
    inp = keras.Input((steps, n_in))
    m = keras.Model(inp, L.LSTM(n, return_sequences=True, name="lstm")(inp))
    growstage.set_param_values_by_dict(m.get_layer("lstm"), values)
    np.testing.assert_allclose(m(x).numpy(), expected, atol=1e-5)  # arithmetic differs: a tolerance


def test_cli_inspect_plan_average_diff_convert(tmp_path, capsys, monkeypatch):
    a, b = _two_dense(), _two_dense()
    pa, pb = str(tmp_path / "a.weights.h5"), str(tmp_path / "b.npz")
    a.save_weights(pa)
    np.savez(pb, **{f"{l}/{p}": v for l, ps in growstage.snapshot(b).values_dict().items() for p, v in ps.items()})
    assert main(["inspect", pa, "--stats", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "keras3" and {"a/kernel", "b/bias"} <= {r["name"] for r in info["params"]}
    k = next(r for r in info["params"] if r["name"] == "a/kernel")
    assert k["max"] == pytest.approx(float(a.get_layer("a").kernel.numpy().max()))
    (tmp_path / "builders.py").write_text(
        "import keras\n"
        "def wide():\n"
        "    x = keras.Input((3,))\n"
        "    h = keras.layers.Dense(6, name='a')(x)\n"
        "    return keras.Model(x, keras.layers.Dense(2, name='b')(h))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", pb, "--into", "builders:wide"]) == 2  # exact by default, as the library
    assert "under mode 'exact'" in capsys.readouterr().err
    assert main(["plan", pb, "--into", "builders:wide", "--mode", "subset"]) == 0
    out = capsys.readouterr().out
    assert "a/kernel" in out and "padded" in out
    assert main(["convert", pb, str(tmp_path / "c.h5"), "--rename", "a/=first/"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "c.h5"), "--json"]) == 0
    assert {r["name"] for r in json.loads(capsys.readouterr().out)["params"]} == {"first/kernel", "first/bias", "b/kernel", "b/bias"}
    assert main(["average", pb, pb, "-o", str(tmp_path / "avg.h5")]) == 0
    assert main(["diff", pb, str(tmp_path / "avg.h5")]) == 0
    capsys.readouterr()
    assert main(["diff", pa, pb]) == 1
    assert "~ a/kernel" in capsys.readouterr().out
    assert main(["plan", pb, "--into", "builders:nothing"]) == 2
    assert "has no function 'nothing'" in capsys.readouterr().err


def test_fit_preloads_on_a_fresh_start_only(tmp_path):
    donor = _two_dense()
    path = str(tmp_path / "donor.h5")
    growstage.save(growstage.snapshot(donor), path)
    sched = growstage.Schedule(lambda stage: _two_dense(), stages=["only"], repetitions=5)

    def frozen_sgd(model, stage):  # learning rate 0: the weights stay what was loaded
        model.compile(keras.optimizers.SGD(0.0), "mse")
    x, y = np.ones((4, 3), "f4"), np.ones((4, 2), "f4")
    cfg = {"init": {"filename": path, "init_for_train": True}}
    ck = str(tmp_path / "ck")
    h = growstage.fit(sched, x, y, epochs=1, compile=frozen_sgd, checkpoint_dir=ck, seed=1,
                      preload_from_files=cfg, log=None)
    assert np.array_equal(h.model.get_layer("a").kernel.numpy(), donor.get_layer("a").kernel.numpy())
    other = _two_dense()
    growstage.save(growstage.snapshot(other), path)  # a resumed run must not load this
    h2 = growstage.fit(sched, x, y, epochs=2, compile=frozen_sgd, checkpoint_dir=ck, resume=True, seed=1,
                       preload_from_files=cfg, log=None)
    assert h2.resumed_from is not None
    assert np.array_equal(h2.model.get_layer("a").kernel.numpy(), donor.get_layer("a").kernel.numpy())
