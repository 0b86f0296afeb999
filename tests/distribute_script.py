"""Run in its own process (logical devices must be set before TensorFlow starts):
a transfer into a model built under MirroredStrategy with two logical CPUs gives
every replica the values a single-device transfer gives, and a growing schedule
runs under that strategy across a stage boundary, prepared ahead or not.  Prints OK on success."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import growstage  # noqa: E402

L = keras.layers


def build(width, depth, seed):
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, 5))
    h = x
    for i in range(1, depth + 1):
        h = L.Bidirectional(L.LSTM(width, return_sequences=True), name=f"blstm{i}")(h)
    return keras.Model(x, L.Dense(3, name="out")(h))


def replicas(v):
    inner = getattr(v, "value", v)
    return list(getattr(inner, "values", [inner]))


def main() -> int:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    snap = growstage.snapshot(build(4, 2, 0))
    ref = build(6, 3, 1)
    growstage.transfer(snap, ref, mode="subset", allow_new_layers=True)
    with strategy.scope():
        big = build(6, 3, 1)
        growstage.transfer(snap, big, mode="subset", allow_new_layers=True)
    for vb, vr in zip(big.weights, ref.weights):
        reps = replicas(vb)
        assert len(reps) == 2, f"{vb.path}: {len(reps)} replicas"
        for r in reps:
            assert np.array_equal(np.asarray(r), vr.numpy()), vb.path

    sched = growstage.Schedule(lambda stage: build(4, stage.spec, 2), stages=[1, 2])
    x = np.random.default_rng(0).normal(size=(8, 4, 5)).astype("f4")
    y = np.random.default_rng(1).normal(size=(8, 4, 3)).astype("f4")
    hist = growstage.fit(sched, x, y, epochs=2, compile=lambda m, s: m.compile("adam", "mse"), strategy=strategy,
                         batch_size=4, log=None)
    assert hist.rebuilds == 1 and len(hist.epochs) == 2
    for v in hist.model.weights:
        reps = replicas(v)
        assert len(reps) == 2 and all(np.array_equal(np.asarray(reps[0]), np.asarray(r)) for r in reps), v.path
    # prepared ahead under the strategy: the same run, bit for bit, and every replica equal
    def unseeded(stage):
        x = keras.Input((None, 5))
        h = x
        for i in range(1, stage.spec + 1):
            h = L.Bidirectional(L.LSTM(4, return_sequences=True), name=f"blstm{i}")(h)
        return keras.Model(x, L.Dense(3, name="out")(h))

    runs = [growstage.fit(growstage.Schedule(unseeded, stages=[1, 2]), x, y, epochs=2, seed=4, strategy=strategy,
                          compile=lambda m, s: m.compile("adam", "mse"), batch_size=4, log=None,
                          prepare_ahead=ahead) for ahead in (False, True)]
    assert [r.transitions[0]["prepared_ahead"] for r in runs] == [False, True], runs[1].transitions[0]["report"].notes
    for v0, v1 in zip(runs[0].model.weights, runs[1].model.weights):
        reps = replicas(v1)
        assert len(reps) == 2 and all(np.array_equal(np.asarray(replicas(v0)[0]), np.asarray(r)) for r in reps), v1.path
    # a tf.device scope around fit holds for the stage prepared in the background too
    with tf.device("/CPU:1"):
        placed = growstage.fit(growstage.Schedule(unseeded, stages=[1, 2]), x, y, epochs=2, seed=4, log=None,
                               compile=lambda m, s: m.compile("adam", "mse"), batch_size=4, prepare_ahead=True)
    assert placed.transitions[0]["prepared_ahead"]
    devices = {getattr(v, "value", v).device for v in placed.model.weights + placed.model.optimizer.variables}
    assert devices and all(d.endswith("CPU:1") for d in devices), devices
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
