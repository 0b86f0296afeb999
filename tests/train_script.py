"""A growing training run used by the kill-and-resume test (run as a subprocess).

    python train_script.py CKPT_DIR OUT.h5 [--kill-after N] [--resume]
"""
import os
import signal
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_DETERMINISTIC_OPS"] = "1"

import keras
import numpy as np
import tensorflow as tf

import growstage
from growstage.train.schedule import Schedule



def build(stage):
    x = keras.Input((6, 3), name="feat")
    h = x
    for i in range(stage.spec):
        h = keras.layers.LSTM(8, return_sequences=True, name=f"lstm{i}")(h)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h), name=f"net{stage.spec}")


def main():
    # Here, not at import: pytest's doctest collection imports this file too.
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    ckpt, out = sys.argv[1], sys.argv[2]
    kill_after = int(sys.argv[sys.argv.index("--kill-after") + 1]) if "--kill-after" in sys.argv else None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 3)).astype("f4")
    y = rng.normal(size=(32, 6, 2)).astype("f4")
    sched = Schedule(build, stages=[2, 3, 4], repetitions=2)

    def on_epoch_end(epoch, model, logs):
        if kill_after is not None and epoch + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    hist = growstage.fit(sched, x, y, epochs=7, seed=1, checkpoint_dir=ckpt, resume="--resume" in sys.argv,
                         compile=lambda m, s: m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse"),
                         batch_size=8, shuffle=False, on_epoch_end=on_epoch_end, log=None)
    from growstage.framework.optimizer import optimizer_state
    state = optimizer_state(hist.model)
    vd = growstage.snapshot(hist.model).values_dict()
    vd["@opt"] = {f"{l}/{p}#{f}": a for l, ps in state["slots"].items() for p, fs in ps.items() for f, a in fs.items()}
    vd["@opt"]["iterations"] = np.array(state["iterations"])
    growstage.save(vd, out, meta={"resumed_from": hist.resumed_from, "rebuilds": hist.rebuilds})


if __name__ == "__main__":
    main()
