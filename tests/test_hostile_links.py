"""Hostile HDF5 structures (issue 16): external storage, external/soft links, virtual datasets,
FIFOs, zip bombs, zero-size arrays. Each is refused with a StoreError naming the file and the
dataset, from metadata, before any data is read; no outside file's bytes ever reach a value."""
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import GrowstageError, StoreError

SECRET = b"SECRET-BYTES-OUTSIDE-THE-FILE!!!"  # 32 bytes = 8 float32


def _secret(tmp):
    p = os.path.join(tmp, "secret.bin")
    open(p, "wb").write(SECRET)
    return p


def _keras3(path, edit):
    """A minimal Keras 3 ``.weights.h5`` layout with one Dense layer, then ``edit(vars_group)``."""
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/out/vars")
        g.attrs["name"] = "out"
        g.create_dataset("0", data=np.ones((4, 2), "f4"))
        edit(g, os.path.dirname(path))
    return path


def _growstage(path, edit):
    growstage.save({"out": {"kernel": np.ones((4, 2), "f4"), "bias": np.zeros(2, "f4")}}, path)
    with h5py.File(path, "r+") as f:
        edit(f["params"]["out"], os.path.dirname(path))
    return path


def _ext_storage(g, tmp):
    g.create_dataset("1", shape=(8,), dtype="f4", external=[(_secret(tmp), 0, 32)])


def _ext_link(g, tmp):
    other = os.path.join(tmp, "other.h5")
    with h5py.File(other, "w") as o:
        o.create_dataset("x", data=np.frombuffer(SECRET, "f4"))
    g["1"] = h5py.ExternalLink(other, "/x")


def _dangling_soft(g, tmp):
    g["1"] = h5py.SoftLink("/nowhere/at/all")


def _vds(source_file, tmp, g):
    layout = h5py.VirtualLayout(shape=(8,), dtype="f4")
    layout[:] = h5py.VirtualSource(source_file, "/x", shape=(8,))
    g.create_virtual_dataset("1", layout, fillvalue=7.0)


def _vds_other(g, tmp):
    other = os.path.join(tmp, "other.h5")
    with h5py.File(other, "w") as o:
        o.create_dataset("x", data=np.frombuffer(SECRET, "f4"))
    _vds(other, tmp, g)


def _vds_missing(g, tmp):
    _vds(os.path.join(tmp, "missing.h5"), tmp, g)


def _vds_self(g, tmp):
    _vds(".", tmp, g)  # "." is the file itself: the case that segfaulted HDF5


CASES = {"external storage": _ext_storage, "external link": _ext_link, "dangling soft link": _dangling_soft,
         "virtual other file": _vds_other, "virtual missing source": _vds_missing, "virtual self": _vds_self}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fmt", ["keras3_h5", "growstage"])
def test_risky_structures_refused(fmt, case, tmp_path):
    maker = {"keras3_h5": _keras3, "growstage": _growstage}[fmt]
    path = maker(str(tmp_path / "hostile.weights.h5" if fmt == "keras3_h5" else tmp_path / "hostile.h5"), CASES[case])
    with pytest.raises(StoreError, match=r"hostile.*refused") as e:
        with growstage.open_checkpoint(path) as r:
            [r.read(n) for n in r]
    assert "/1" in str(e.value) or "'1'" in str(e.value) or "/out/" in str(e.value)


def test_soft_link_inside_the_file_is_fine(tmp_path):
    def inside(g, tmp):
        g["1"] = h5py.SoftLink("/layers/out/vars/0")
    path = _keras3(str(tmp_path / "ok.weights.h5"), inside)
    with growstage.open_checkpoint(path) as r:
        assert all(np.array_equal(r.read(n), np.ones((4, 2), "f4")) for n in r)


def test_fifo_refused_without_blocking(tmp_path):
    path = str(tmp_path / "x.h5")
    os.mkfifo(path)
    with pytest.raises(StoreError, match="x.h5.*not a regular file"):
        growstage.open_checkpoint(path)
    with pytest.raises(StoreError, match="x.h5.*not a regular file"):
        growstage.load(path)


def test_keras_zip_bomb_refused_before_inflating(tmp_path):
    path = str(tmp_path / "bomb.keras")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"\0" * (200 << 20))  # 200 MiB of zeros: ~200 KiB deflated
    with pytest.raises(StoreError, match="bomb.keras.*decompression bomb"):
        growstage.open_checkpoint(path)


def test_npz_zip_bomb_refused(tmp_path):
    path = str(tmp_path / "bomb.npz")
    np.savez_compressed(path, a=np.zeros((70 << 20) // 4, "f4"))  # 70 MiB of zeros
    with pytest.raises(StoreError, match="bomb.npz.*decompression bomb"):
        growstage.open_checkpoint(path)


def test_zero_size_arrays_round_trip(tmp_path):
    path = str(tmp_path / "empty.h5")
    growstage.save({"l": {"w": np.zeros((0, 3), "f4"), "b": np.zeros(0, "f8")}}, path)
    with growstage.load(path) as snap:
        got = {n: p.read() for n, p in snap["l"].items()} if hasattr(snap["l"], "items") else None
    assert got is None or (got["w"].shape == (0, 3) and got["b"].shape == (0,))
