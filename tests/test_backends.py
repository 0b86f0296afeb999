"""Backend-independent checks of the per-backend code: run on every Keras backend
(`KERAS_BACKEND=jax python -m pytest -m "not tf_only"`)."""
import sys

import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import GrowstageError
from growstage.core.resize import resize
from growstage.framework.backends import backend_name, current
from growstage.framework.device_values import resize_device, resizes_on_device
from growstage.io.readers.tf_bundle import open_tf_checkpoint

CASES = [  # old shape, new shape, old split, new split
    ((4, 8), (6, 12), [[4], [2, 2, 2, 2]], [[6], [3, 3, 3, 3]]),
    ((6, 12), (4, 8), [[6], [3, 3, 3, 3]], [[4], [2, 2, 2, 2]]),
    ((5,), (9,), [[2, 3]], [[4, 5]]),
    ((3, 2, 4), (3, 3, 2), None, None),
]


@pytest.mark.parametrize("old_shape,new_shape,old_split,new_split", CASES)
@pytest.mark.parametrize("fill", ["scalar", "array"])
def test_device_resize_equals_numpy_resize(old_shape, new_shape, old_split, new_split, fill):
    rng = np.random.default_rng(0)
    old = rng.normal(size=old_shape).astype("float32")
    base = rng.normal(size=new_shape).astype("float32") if fill == "array" else -7.5
    want = resize(old, new_shape, old_split=old_split, new_split=new_split, fill=base)
    be = current()
    got = resize_device(be.native(old, "float32"), new_shape, old_split=old_split, new_split=new_split,
                        fill=be.native(base, "float32") if fill == "array" else base)
    assert be.is_native(got)
    assert np.array_equal(be.to_numpy(got), want)
    if fill == "array":
        assert np.array_equal(np.asarray(base), base)  # the fill (an undo value) is untouched


def _dense_model(n, seed):
    keras.utils.set_random_seed(seed)
    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(n, name="hidden")(x)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h))


def test_snapshot_holds_device_arrays_and_transfer_equals_numpy_path():
    src = _dense_model(4, seed=1)
    snap = growstage.snapshot(src)
    prm = snap["hidden"]["kernel"]
    assert current().is_native(prm.value.tensor)  # a device array until someone asks for numpy
    assert resizes_on_device() == (backend_name() != "tensorflow")  # TF slices its buffers' numpy views
    assert isinstance(prm.read(), np.ndarray) and not prm.read().flags.writeable
    via_device, via_numpy = _dense_model(6, seed=2), _dense_model(6, seed=2)
    growstage.transfer(snap, via_device, mode="subset")
    growstage.transfer(snap.values_dict(), via_numpy, mode="subset")
    for a, b in zip(via_device.weights, via_numpy.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a.value), keras.ops.convert_to_numpy(b.value))
    src.get_layer("hidden").kernel.assign(np.zeros((3, 4), "float32"))  # the snapshot does not follow
    assert not np.array_equal(prm.read(), np.zeros((3, 4)))
    assert not np.array_equal(keras.ops.convert_to_numpy(via_device.get_layer("hidden").kernel.value)[:, :4],
                              np.zeros((3, 4)))


def test_failed_device_transfer_leaves_target_unchanged():
    src, dst = _dense_model(4, seed=1), _dense_model(6, seed=2)
    before = [np.array(keras.ops.convert_to_numpy(w.value)) for w in dst.weights]
    with pytest.raises(GrowstageError):
        growstage.transfer(src, dst, mode="subset", custom_param_importer={"out": _fail})
    for w, b in zip(dst.weights, before):
        assert np.array_equal(keras.ops.convert_to_numpy(w.value), b)


def _fail(layer, values, context):
    raise RuntimeError("importer failed on purpose")


def test_trace_release_is_tensorflow_only():
    from growstage.framework.traces import _registry, release_since

    assert (_registry() is None) == (backend_name() != "tensorflow")
    assert release_since(frozenset()) >= 0


def test_tf_checkpoint_without_tensorflow_names_the_package(tmp_path, monkeypatch):
    (tmp_path / "model.ckpt.index").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now raises ImportError
    with pytest.raises(GrowstageError, match=r"needs tensorflow.*pip install"):
        open_tf_checkpoint(str(tmp_path / "model.ckpt"))
