"""Hostile and damaged input, generated across every reader: each case either loads
(and, where the format has checksums, loads the original values) or raises a
GrowstageError that names the file; the target is never changed; nothing else escapes."""
import os
import shutil
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import growstage
from growstage.core.errors import GrowstageError, PlanError

from conftest import build_blstm

CHECKSUMMED = {"growstage", "keras", "npz", "tf1", "tf2"}  # plain Keras HDF5 files carry no checksums
TRANSFERABLE = {"growstage", "keras3_h5", "keras", "keras2_h5"}


def _tf1(d):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(0)
        tf.compat.v1.get_variable("enc/w", shape=(64, 32))
        tf.compat.v1.get_variable("enc/b", shape=(32,))
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return tf.compat.v1.train.Saver().save(sess, os.path.join(d, "m"))


def _tf2(d):
    ck = tf.train.Checkpoint(w=tf.Variable(np.arange(2048, dtype="f4").reshape(64, 32)), b=tf.Variable(np.ones(32, "f4")))
    return ck.write(os.path.join(d, "c"))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("bases"))
    model = build_blstm(3, depth=1, seed=4)
    out = {}
    out["growstage"] = str(growstage.save(growstage.snapshot(model), os.path.join(d, "s.h5")))
    out["keras3_h5"] = os.path.join(d, "m.weights.h5")
    model.save_weights(out["keras3_h5"])
    out["keras"] = os.path.join(d, "m.keras")
    model.save(out["keras"])
    out["npz"] = os.path.join(d, "w.npz")
    np.savez(out["npz"], **{k: v for k, v in growstage.snapshot(model).values_dict()["out"].items()})
    out["tf1"] = _tf1(d)
    out["tf2"] = _tf2(d)
    import tf_keras  # a test dependency: Keras 2 writes the legacy file
    L2 = tf_keras.layers
    x = tf_keras.Input((None, 5))
    h = L2.Bidirectional(L2.LSTM(3, return_sequences=True), name="blstm1")(x)
    m2 = tf_keras.Model(x, L2.Dense(7, name="out")(h))
    out["keras2_h5"] = os.path.join(d, "k2.h5")
    m2.save_weights(out["keras2_h5"])
    return out


MUTATIONS = ([("truncate", f) for f in (0.0, 0.05, 0.25, 0.5, 0.75, 0.95)]
             + [("flip", o) for o in (0, 3, 8, 24, 100, "mid", "end")] + [("magic", None)])
KINDS = ["growstage", "keras3_h5", "keras", "keras2_h5", "npz", "tf1", "tf2"]


def _victim(path, kind):
    if kind in ("tf1", "tf2"):
        return path + ".data-00000-of-00001"
    return path


def _mutate(src, kind, how, arg, tmp):
    if kind in ("tf1", "tf2"):
        dst = os.path.join(tmp, "ck")
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copy(src + suffix, dst + suffix)
    else:
        dst = os.path.join(tmp, os.path.basename(src))
        shutil.copy(src, dst)
    victim = _victim(dst, kind)
    data = bytearray(open(victim, "rb").read())
    if how == "truncate":
        data = data[: int(len(data) * arg)]
    elif how == "flip":
        pos = {"mid": len(data) // 2, "end": len(data) - 10}.get(arg, arg)
        data[min(pos, len(data) - 1)] ^= 0x5A
    else:
        data[:8] = b"GARBAGE!"
    open(victim, "wb").write(bytes(data))
    return dst


def _values(path, model=None):
    with growstage.open_checkpoint(path, model=model) as r:
        return {n: r.read(n) for n in r}


def _attempt(path, kind, original):
    target = build_blstm(3, depth=1, seed=9)
    before = [w.numpy().copy() for w in target.weights]
    try:
        if kind in TRANSFERABLE:
            growstage.transfer(path, target, source_model=target)
        got = _values(path, model=target)
    except GrowstageError as e:
        assert os.path.basename(path).split(".")[0] in str(e), str(e)
        assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, target.weights)), "target changed"
        return "error"
    if kind in CHECKSUMMED:
        assert got.keys() == original.keys()
        for n, v in got.items():
            assert np.array_equal(v, original[n]), f"undetected damage in {n}"
    return "loaded"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how,arg", MUTATIONS, ids=[f"{h}-{a}" for h, a in MUTATIONS])
def test_damaged_file(bases, kind, how, arg, tmp_path):
    original = _values(bases[kind], model=build_blstm(3, depth=1))
    path = _mutate(bases[kind], kind, how, arg, str(tmp_path))
    outcome = _attempt(path, kind, original)
    if how in ("truncate", "magic") and kind != "tf2":
        assert outcome == "error"


def _growstage_h5(path, edit):
    growstage.save({"out": {"kernel": np.ones((4, 2), "f4"), "bias": np.zeros(2, "f4")}}, path)
    with h5py.File(path, "r+") as f:
        edit(f["params"]["out"])
    return path


SPECIAL = {
    "object dtype": lambda g: (g.__delitem__("bias"), g.create_dataset("bias", data=np.array(["x", "y"], dtype=h5py.string_dtype()))),
    "absurd shape": lambda g: g.create_dataset("huge", shape=(10**6, 10**6), dtype="f4", chunks=(1, 1024)),
    "duplicated name": lambda g: g.create_dataset("kernel2", data=np.ones((4, 2), "f4")).attrs.__setitem__("name", "kernel"),
}


@pytest.mark.parametrize("case", list(SPECIAL))
def test_hostile_growstage_files(case, tmp_path):
    path = _growstage_h5(str(tmp_path / "hostile.h5"), SPECIAL[case])
    with pytest.raises(GrowstageError, match="hostile.h5"):
        _values(path)


def test_hostile_keras_weights_object_dtype_and_absurd_shape(tmp_path):
    model = build_blstm(3, depth=1)
    for i, edit in enumerate([
        lambda g: (g.__delitem__("0"), g.create_dataset("0", data=np.array(["a"], dtype=h5py.string_dtype()))),
        lambda g: (g.__delitem__("0"), g.create_dataset("0", shape=(10**6, 10**6), dtype="f4", chunks=(1, 1024))),
    ]):
        path = str(tmp_path / f"hostile{i}.weights.h5")
        model.save_weights(path)
        with h5py.File(path, "r+") as f:
            edit(f["layers/dense/vars"])
        with pytest.raises(GrowstageError, match=f"hostile{i}.weights.h5"):
            growstage.transfer(path, build_blstm(3, depth=1))


def test_hostile_npz_absurd_header_and_duplicates(tmp_path):
    path = str(tmp_path / "hostile.npz")
    with zipfile.ZipFile(path, "w") as z:
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**9, 10**9)}
        import io
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        z.writestr("w.npy", buf.getvalue() + b"\0" * 16)
    with pytest.raises(GrowstageError, match="hostile.npz.*declares shape"):
        growstage.open_checkpoint(path)
    dup = str(tmp_path / "dup.npz")
    with zipfile.ZipFile(dup, "w") as z:
        for _ in range(2):
            buf = io.BytesIO()
            np.save(buf, np.ones(2, "f4"))
            z.writestr("w.npy", buf.getvalue())
    with pytest.raises(GrowstageError, match="dup.npz.*twice"):
        growstage.open_checkpoint(dup)


def test_odd_names_round_trip(tmp_path):
    names = ["a/../../etc/passwd", "é\u202eü", "/lead", "sp ace", "%2F", ""]
    vd = {n or "root": {f"p/{i}": np.full(2, i, "f4")} for i, n in enumerate(names)}
    path = growstage.save(vd, tmp_path / "odd.h5")
    with growstage.load(path) as snap:
        assert sorted(snap) == sorted(vd)
        for lname, params in vd.items():
            for pname, arr in params.items():
                assert np.array_equal(snap[lname][pname].read(), arr)
    assert os.listdir(tmp_path) == ["odd.h5"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_floats_only_when_allowed_and_reported(dtype):
    import ml_dtypes  # ships with TensorFlow
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(2, name="out")(x))
    vd = {"out": {"kernel": np.ones((3, 2)).astype(dt), "bias": np.ones(2).astype(dt)}}
    before = model.get_layer("out").kernel.numpy().copy()
    with pytest.raises(PlanError, match=f"source dtype {dt} differs from target dtype float32; pass allow_cast"):
        growstage.transfer(vd, model)
    assert np.array_equal(before, model.get_layer("out").kernel.numpy())
    rep = growstage.transfer(vd, model, allow_cast=True)
    assert any(f"out/kernel: cast {dt} -> float32" in n for n in rep.notes)
    assert np.array_equal(model.get_layer("out").kernel.numpy(), np.ones((3, 2), "f4"))
