"""Issue 28, items 3-4: save(snapshot(model), path, sharded=True) writes a folder, each device's shards
from that device (no gather), atomic and checksummed; load, inspect, transfer and rebuild read it, and
a transfer into another mesh (other shape, fewer devices) and a bigger model reads per device only
the regions its shards need, giving the single-device values.  TensorFlow and PyTorch refuse
sharded=True for a live model, saying it needs JAX."""
import json
import os

import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import GrowstageError, StoreError
from sharded_models import fill_values, mlp, model_parallel, need_mesh, spec_of, under, weights_of


def _watch():
    from growstage.framework.backends.jax_mesh import watch_host_reads

    return watch_host_reads()


def _saved(tmp_path, shape=(2, 4)):
    with under(model_parallel(shape)):
        model = fill_values(mlp(16))
        path = tmp_path / "snap"
        with _watch() as reads:
            growstage.save(growstage.snapshot(model), path, sharded=True)
    return model, path, reads


def test_tensorflow_and_torch_say_sharded_needs_jax(tmp_path):
    if keras.backend.backend() == "jax":
        pytest.skip("the JAX backend writes sharded snapshots")
    with pytest.raises(GrowstageError, match="sharded=True.*needs the JAX backend"):
        growstage.save(growstage.snapshot(mlp(4, compile=False)), tmp_path / "s", sharded=True)
    assert not (tmp_path / "s").exists() and os.listdir(tmp_path) == []


def test_save_writes_each_devices_shards_from_that_device_and_loads_back(tmp_path):
    need_mesh()
    model, path, reads = _saved(tmp_path)
    assert reads and all(devices == 1 for _, devices in reads)  # shards only: nothing spans 2 devices
    kernel = model.get_layer("h").kernel.value
    assert sorted(os.listdir(path)) == ["device-00000.safetensors", "device-00001.safetensors",
                                        "device-00002.safetensors", "device-00003.safetensors", "index.json"]
    index = json.loads((path / "index.json").read_text())
    blocks = {(e["layer"], e["param"]): e["blocks"] for e in index["params"]}
    assert len(blocks[("h", "kernel")]) == 4 and len(blocks[("out", "bias")]) == 1  # replicas once
    assert index["complete"] and "structure_crc32" in index
    with growstage.load(path) as snap:
        for name, prm in growstage.snapshot(model).flat().items():
            assert np.array_equal(snap.flat()[name].read(), np.asarray(prm.read())), name
        assert snap["h"]["kernel"].split == [[8], [16]]
    rows = {r["name"]: r for r in growstage.filetools.inspect(path)["params"]}
    assert rows["h/kernel"]["shape"] == list(kernel.shape)
    from growstage.cli import main

    assert main(["inspect", str(path), "--json"]) == 0  # the command line reads it too
    assert main(["inspect", str(path), "--stats"]) == 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".growstage-tmp")]


def test_damage_is_refused_and_a_failed_write_leaves_nothing(tmp_path):
    need_mesh()
    model, path, _ = _saved(tmp_path)
    index = json.loads((path / "index.json").read_text())
    index["params"][0]["split"] = [[4, 4], [16]]
    (path / "index.json").write_text(json.dumps(index))
    with pytest.raises(StoreError, match="structure checksum"):
        growstage.load(path)
    _, path, _ = _saved(tmp_path)  # replaces the damaged folder
    data = bytearray((path / "device-00001.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (path / "device-00001.safetensors").write_bytes(bytes(data))
    with growstage.load(path) as snap:
        with pytest.raises(StoreError, match="checksum mismatch"):
            [p.read() for p in snap.flat().values()]

    class Broken:
        shape, dtype = (2,), np.dtype("f4")

        def read(self):
            raise OSError("disk gone")

    snap = growstage.snapshot(model)
    snap.layers["zz"] = {"w": growstage.Param(Broken())}
    with pytest.raises(OSError):
        growstage.save(snap, tmp_path / "new", sharded=True)
    assert not (tmp_path / "new").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".growstage-tmp")]
    (tmp_path / "mine").mkdir()
    with pytest.raises(StoreError, match="not a sharded growstage snapshot"):
        growstage.save(growstage.snapshot(model), tmp_path / "mine", sharded=True)


@pytest.mark.parametrize("mesh", [(4, 2), (2, 2)], ids=["2x4->4x2", "8->4 devices"])
def test_transfer_from_a_sharded_snapshot_into_another_mesh_and_a_bigger_model(tmp_path, mesh, monkeypatch):
    need_mesh()
    import jax

    from growstage.io.sharded_store import ShardedArray

    model, path, _ = _saved(tmp_path)
    regions = []
    read_region = ShardedArray.read_region
    monkeypatch.setattr(ShardedArray, "read_region", lambda self, b: regions.append((self._label, b)) or read_region(self, b))
    with under(model_parallel(mesh, jax.devices()[: mesh[0] * mesh[1]])):
        new = mlp(32)
        init = [np.array(v.value) for v in new.weights]
        with _watch() as reads:
            growstage.transfer(str(path), new, mode="subset", fill="preserve")
        rebuilt, _ = growstage.rebuild(lambda: mlp(32), str(path), mode="subset", fill="zeros")
    assert [r for r in reads if r[0]] == []
    kernel = new.get_layer("h").kernel
    assert len(kernel.value.sharding.device_set) == mesh[0] * mesh[1] and spec_of(kernel) == (None, "model")
    h_regions = [b for label, b in regions if label == "h/kernel"]
    assert h_regions and all(b[1][1] - b[1][0] == 16 // mesh[1] for b in h_regions)  # a shard, never the whole
    # the single-device reference: the same source values into the same init on one device
    values = {l: {p: np.asarray(prm.read()) for p, prm in ps.items()} for l, ps in growstage.snapshot(model).layers.items()}
    one = mlp(32)
    for v, w in zip(one.weights, init):
        v.assign(w)
    growstage.transfer(values, one, mode="subset", fill="preserve")
    for (k, a), b in zip(weights_of(new).items(), weights_of(one).values()):
        assert np.array_equal(a, b), k
    zeros, _ = growstage.rebuild(lambda: mlp(32), values, mode="subset", fill="zeros")
    for (k, a), b in zip(weights_of(rebuilt).items(), weights_of(zeros).values()):
        assert np.array_equal(a, b), k
