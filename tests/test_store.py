"""growstage HDF5 snapshots: round trip, lazy reads, damage detection, atomicity."""
import json
import os

import h5py
import numpy as np
import pytest

import growstage
from growstage.io.store import TMP_PREFIX, clean_stale_tmp
from conftest import build_blstm


def test_round_trip_is_bit_exact_with_split_roles_and_meta(tmp_path):
    m = build_blstm(4, seed=1)
    snap = growstage.snapshot(m, meta={"stage": 2, "epoch": 5})
    path = growstage.save(snap, tmp_path / "s.h5")
    with growstage.load(path) as back:
        assert back.meta["stage"] == 2 and back.meta["epoch"] == 5
        assert back.keys_flat() == snap.keys_flat()
        for l, ps in snap.items():
            for p, prm in ps.items():
                got = back[l][p]
                assert got.split == prm.split and got.roles == prm.roles
                assert np.array_equal(got.read(), prm.read())
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]


def test_load_is_lazy_and_transfers_from_path(tmp_path):
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    path = growstage.save(growstage.snapshot(old), tmp_path / "old.h5")
    with growstage.load(path) as lazy:
        assert not isinstance(lazy["out"]["kernel"].value, np.ndarray)
    rep = growstage.transfer(str(path), new, mode="subset")
    ref = build_blstm(6, seed=2)
    growstage.transfer(old, ref, mode="subset")
    assert rep.counts() == {"padded": 13, "copied": 1}
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(new.weights, ref.weights))


def test_scalars_keep_their_shape(tmp_path):
    path = growstage.save({"opt": {"iterations": np.array(7, dtype=np.int64)}}, tmp_path / "s.h5")
    with growstage.load(path) as back:
        v = back["opt"]["iterations"].read()
        assert v.shape == () and int(v) == 7


def test_names_with_slashes_survive(tmp_path):
    vd = {"enc/conv1": {"kernel": np.arange(6.0).reshape(2, 3)}, "enc": {"conv1/kernel": np.zeros(2)}}
    path = growstage.save(vd, tmp_path / "x.h5")
    with growstage.load(path) as back:
        assert sorted(back.keys_flat()) == ["enc/conv1/kernel", "enc/conv1/kernel"]
        assert np.array_equal(back["enc/conv1"]["kernel"].read(), vd["enc/conv1"]["kernel"])
        assert back["enc"]["conv1/kernel"].shape == (2,)


def _data_offset(path, key):
    with h5py.File(path, "r") as f:
        return f[key].id.get_offset()


def test_flipped_bit_in_data_is_detected(tmp_path):
    path = growstage.save({"out": {"kernel": np.arange(64, dtype="f4")}}, tmp_path / "s.h5")
    off = _data_offset(path, "params/out/kernel")
    with open(path, "r+b") as fh:
        fh.seek(off + 17)
        b = fh.read(1)
        fh.seek(off + 17)
        fh.write(bytes([b[0] ^ 0x10]))
    with growstage.load(path) as snap:
        with pytest.raises(growstage.StoreError, match=r"s\.h5: checksum mismatch in param out/kernel"):
            snap["out"]["kernel"].read()


def test_incomplete_wrong_and_missing_files(tmp_path):
    path = growstage.save({"a": {"w": np.zeros(3)}}, tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(growstage.StoreError, match="incomplete"):
        growstage.load(path)
    other = tmp_path / "keras.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(2)
    with pytest.raises(growstage.StoreError, match="keras.h5: not a growstage snapshot"):
        growstage.load(other)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(growstage.StoreError, match="junk.h5: not a readable HDF5 file"):
        growstage.load(junk)
    with pytest.raises(growstage.StoreError, match="no such file"):
        growstage.load(tmp_path / "nope.h5")


def test_object_dtype_is_refused_on_write_and_read(tmp_path):
    with pytest.raises(growstage.StoreError, match="only numeric"):
        growstage.save({"a": {"w": np.array(["x"], dtype=object)}}, tmp_path / "s.h5")
    assert not list(tmp_path.iterdir())  # the temporary file was removed
    path = growstage.save({"a": {"w": np.zeros(2)}}, tmp_path / "t.h5")
    with h5py.File(path, "r+") as f:
        f["params/a"].create_dataset("evil", data=np.array([b"payload"]))
    with pytest.raises(growstage.StoreError, match="a/evil is not a numeric dataset"):
        growstage.load(path)


def test_failed_write_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "s.h5"
    growstage.save({"a": {"w": np.ones(3)}}, path, meta={"epoch": 1})

    class Bad:
        shape, dtype = (3,), np.dtype("f8")

        def read(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        growstage.save({"a": {"w": growstage.Param(Bad())}}, path, meta={"epoch": 2})
    with growstage.load(path) as back:
        assert back.meta["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_stale_temporary_files_of_dead_writers_are_cleaned(tmp_path):
    dead = tmp_path / f"{TMP_PREFIX}999999999-abc.h5"
    alive = tmp_path / f"{TMP_PREFIX}1-abc.h5"  # pid 1 is always alive
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    assert clean_stale_tmp(tmp_path) == [str(dead)]
    assert alive.exists()


def test_meta_must_be_json(tmp_path):
    with pytest.raises(growstage.StoreError, match="JSON"):
        growstage.save({"a": {"w": np.zeros(1)}}, tmp_path / "s.h5", meta={"f": object()})
    path = growstage.save({"a": {"w": np.zeros(1)}}, tmp_path / "s.h5", meta={"stage": "two"})
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["meta"])["stage"] == "two"
