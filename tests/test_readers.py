"""Readers on files written by TensorFlow and Keras themselves, checked against
the frameworks' own loaders or the values the writer held."""
import numpy as np
import pytest
import tensorflow as tf
import keras

import growstage
from growstage.core.errors import GrowstageError, StoreError
from growstage.io.readers import open_checkpoint

from conftest import build_blstm

L = keras.layers


def _tf1_save(path, make_vars, var_list=None):
    """Build variables in a TF1 graph, initialise them, save with tf.compat.v1.train.Saver; return their values."""
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(1)
        made = make_vars()
        saver = tf.compat.v1.train.Saver(var_list=var_list(made) if var_list else None)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            values = {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables()}
            prefix = saver.save(sess, str(path))
    return prefix, values


def test_tf1_partitioned_variable_reads_whole(tmp_path):
    def make():
        return tf.compat.v1.get_variable("enc/w", shape=(7, 3), partitioner=tf.compat.v1.fixed_size_partitioner(3))
    prefix, vals = _tf1_save(tmp_path / "m", make)
    with open_checkpoint(tmp_path) as r:
        assert r.format == "tf1" and r["enc/w"].shape == (7, 3)
        whole = np.concatenate([vals[f"enc/w/part_{i}"] for i in range(3)])
        assert np.array_equal(r.read("enc/w"), whole)
        assert np.array_equal(r.read("enc/w", np.s_[2:4]), whole[2:4])


def test_tf1_parts_saved_under_own_names_are_reassembled_and_slots_set_apart(tmp_path):
    def make():
        w = tf.compat.v1.get_variable("w", shape=(4, 5), partitioner=tf.compat.v1.fixed_size_partitioner(2, axis=1))
        loss = tf.reduce_sum(tf.square(tf.concat(list(w), axis=1)))
        step = tf.compat.v1.train.get_or_create_global_step()
        return w, tf.compat.v1.train.AdamOptimizer().minimize(loss, global_step=step)

    def by_part_names(made):
        return {v.op.name: v for v in tf.compat.v1.global_variables()}
    prefix, vals = _tf1_save(tmp_path / "m", make, by_part_names)
    r = open_checkpoint(prefix)
    assert list(r) == ["w"] and r["w"].shape == (4, 5)
    assert np.array_equal(r.read("w"), np.concatenate([vals["w/part_0"], vals["w/part_1"]], axis=1))
    assert {"global_step", "beta1_power", "w/part_0/Adam", "w/part_1/Adam_1"} <= set(r.optimizer)
    assert any("reassembled from 2 parts along axis 1" in n for n in r.notes)


def _keras2_model(tf_keras):
    L2 = tf_keras.layers
    x = tf_keras.Input((None, 5))
    h = L2.Bidirectional(L2.LSTM(4, return_sequences=True), name="blstm1")(x)
    h = L2.MultiHeadAttention(2, 3, name="att")(h, h)
    y = L2.Dense(7, name="out")(h)
    m = tf_keras.Model(x, y)
    m.compile("adam", "mse")
    m.fit(np.ones((2, 3, 5), "f4"), np.ones((2, 3, 7), "f4"), verbose=0)
    return m


def _keras3_same():
    x = keras.Input((None, 5))
    h = L.Bidirectional(L.LSTM(4, return_sequences=True), name="blstm1")(x)
    h = L.MultiHeadAttention(2, 3, name="att")(h, h)
    return keras.Model(x, L.Dense(7, name="out")(h))


def _k2_values(m):
    """{(layer, attribute path): value} from the Keras 2 model itself."""
    out = {}
    for layer in m.layers:
        for w in layer.weights:
            rest = w.name.split("/", 1)[1].rsplit(":", 1)[0]
            out[(layer.name, rest)] = w.numpy()
    return out


@pytest.mark.tf_only
@pytest.mark.parametrize("how", ["save_weights_h5", "save_h5", "tf_checkpoint"])
def test_keras2_files_load_into_keras3_model(tmp_path, how):
    import tf_keras  # a test dependency: Keras 2 writes the legacy files
    m2 = _keras2_model(tf_keras)
    if how == "save_weights_h5":
        path = str(tmp_path / "w.h5")
        m2.save_weights(path)
    elif how == "save_h5":
        path = str(tmp_path / "full.h5")
        m2.save(path)
    else:
        path = tf.train.Checkpoint(model=m2, optimizer=m2.optimizer).write(str(tmp_path / "ck"))
    m3 = _keras3_same()
    rep = growstage.transfer(path, m3, source_model=m2)
    assert set(rep.counts()) == {"copied"}
    k2 = {v.name.rsplit(":", 1)[0]: v.numpy() for v in m2.weights}
    for layer in m3.layers:
        for w in layer.weights:
            # a Keras 3 variable path ends like its Keras 2 name: blstm1/forward_lstm/lstm_cell/kernel
            assert np.array_equal(w.numpy(), k2[w.path]), w.path
    if how == "tf_checkpoint":
        with open_checkpoint(path, model=m2) as r:
            assert r.format == "tf2" and any(n.startswith("optimizer/") for n in r.optimizer)
        # without source_model the target's structure names layer_with_weights-N
        m3b = _keras3_same()
        growstage.transfer(path, m3b)
        assert np.array_equal(m3b.get_layer("out").kernel.numpy(), k2["out/kernel"])


def test_keras2_checkpoint_without_naming_model_is_a_clear_error(tmp_path):
    import tf_keras  # a test dependency: Keras 2 writes the legacy files
    m2 = _keras2_model(tf_keras)
    path = tf.train.Checkpoint(model=m2).write(str(tmp_path / "ck"))
    with pytest.raises(StoreError, match="layer_with_weights-N.*source_model="):
        open_checkpoint(path)
    small = keras.Sequential([keras.Input((3,)), L.Dense(2, name="only")])
    with pytest.raises(StoreError, match="3 layers with weights but the model used to name them has 1"):
        open_checkpoint(path, model=small)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras3_files_equal_keras_load_weights(tmp_path, suffix):
    src = build_blstm(6, depth=2, seed=3)
    path = str(tmp_path / f"m{suffix}")
    src.save_weights(path) if suffix == ".weights.h5" else src.save(path)
    ref, mine = build_blstm(6, depth=2, seed=4), build_blstm(6, depth=2, seed=5)
    ref.load_weights(path)
    growstage.transfer(path, mine)
    for a, b in zip(ref.weights, mine.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.path


def test_keras3_file_grows_like_in_memory_snapshot(tmp_path):
    small = build_blstm(4, depth=2, seed=1)
    path = str(tmp_path / "small.weights.h5")
    small.save_weights(path)
    via_file, via_snapshot = build_blstm(6, depth=3, seed=2), build_blstm(6, depth=3, seed=2)
    opts = dict(mode="subset", allow_new_layers=True)
    growstage.transfer(path, via_file, source_model=small, **opts)
    growstage.transfer(growstage.snapshot(small), via_snapshot, **opts)
    for a, b in zip(via_file.weights, via_snapshot.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.path


def test_npz_reads_and_refuses_pickles(tmp_path):
    good = tmp_path / "g.npz"
    np.savez(good, **{"out/kernel": np.arange(6, dtype="f4").reshape(3, 2)})
    with open_checkpoint(good) as r:
        assert r.read("out/kernel", np.s_[1]).tolist() == [2.0, 3.0]
    bad = tmp_path / "b.npz"
    np.savez(bad, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(StoreError, match="b.npz.*never unpickles"):
        open_checkpoint(bad)


@pytest.mark.parametrize("kind", ["tf1", "weights.h5", "keras", "k2h5", "npz", "growstage"])
def test_damaged_files_name_the_file(tmp_path, kind):
    m = build_blstm(3, depth=1)
    if kind == "tf1":
        def make():
            return tf.compat.v1.get_variable("w", shape=(50, 50))
        prefix, _ = _tf1_save(tmp_path / "m", make)
        victim = prefix + ".index"
        path = prefix
    elif kind == "k2h5":
        import tf_keras  # a test dependency: Keras 2 writes the legacy files
        path = victim = str(tmp_path / "w.h5")
        _keras2_model(tf_keras).save_weights(path)
    elif kind == "npz":
        path = victim = str(tmp_path / "w.npz")
        np.savez(path, **{"out/kernel": np.ones((200, 200), "f4")})
    elif kind == "growstage":
        path = victim = str(tmp_path / "s.h5")
        growstage.save(growstage.snapshot(m), path)
    else:
        path = victim = str(tmp_path / f"m.{kind}")
        m.save_weights(path) if kind == "weights.h5" else m.save(path)
    data = open(victim, "rb").read()
    with open(victim, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(GrowstageError) as e:
        with open_checkpoint(path, model=m) as r:
            for name in r:
                r.read(name)
    assert str(path).split("/")[-1].split(".")[0] in str(e.value)


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"hello world")
    with pytest.raises(StoreError, match="x.bin: not a format growstage reads"):
        open_checkpoint(tmp_path / "x.bin")
    with pytest.raises(StoreError, match="nope: no such file"):
        open_checkpoint(tmp_path / "nope")
