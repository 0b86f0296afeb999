"""Issue 28, item 5: fit under keras.distribution (JAX, (2, 4) mesh) with a growth between stages writes
sharded checkpoint folders; stopped before the growth and resumed on the same mesh it ends bit for bit
where an uninterrupted run ends, resumed on a (4, 2) mesh within 1e-5."""
import os
import shutil

import keras
import numpy as np

import growstage
from growstage.train.schedule import Schedule
from sharded_models import mlp, model_parallel, need_mesh, spec_of, under, weights_of

X = np.random.default_rng(0).standard_normal((16, 8)).astype("f4")
Y = np.random.default_rng(1).standard_normal((16, 4)).astype("f4")


def _fit(directory, epochs, resume=False):
    sched = Schedule(lambda stage: mlp(stage.spec, compile=False), stages=[16, 32], fill="preserve")
    return growstage.fit(sched, X, Y, epochs=epochs, checkpoint_dir=str(directory), resume=resume, seed=0, log=None,
                         compile=lambda m, s: m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse"),
                         batch_size=8, shuffle=False, verbose=0)


def test_fit_grows_on_the_mesh_writes_sharded_checkpoints_and_resumes(tmp_path):
    need_mesh()
    with under(model_parallel((2, 4))):
        full = _fit(tmp_path / "full", 3)
        assert full.rebuilds == 1 and spec_of(full.model.get_layer("h").kernel) == (None, "model")
        names = sorted(os.listdir(tmp_path / "full"))
        assert names == ["epoch-0000", "epoch-0001", "epoch-0002"]
        assert os.path.isfile(tmp_path / "full" / "epoch-0002" / "index.json")
        with growstage.load(tmp_path / "full" / "epoch-0002") as snap:
            assert snap["h"]["kernel"].shape == (8, 32) and "@optimizer/h" in snap.layers
        _fit(tmp_path / "cut", 1)  # stopped after epoch 0: the growth comes after the resume
    shutil.copytree(tmp_path / "cut", tmp_path / "cut2")
    with under(model_parallel((2, 4))):
        same = _fit(tmp_path / "cut", 3, resume=True)
    with under(model_parallel((4, 2))):
        other = _fit(tmp_path / "cut2", 3, resume=True)
        assert other.model.get_layer("h").kernel.value.sharding.mesh.devices.shape == (4, 2)
    want = weights_of(full.model)
    for k, v in weights_of(same.model).items():
        assert np.array_equal(v, want[k]), k
    for k, v in weights_of(other.model).items():
        np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert same.resumed_from.endswith("epoch-0000")
