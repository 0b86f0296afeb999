"""Hostile files, round two (issue 16): format detection by bytes, latest_checkpoint that skips
anything damaged and survives crashes, every escape a GrowstageError naming the file, TF state
files that point elsewhere, structure checksums (format v2), and large-declaration refusal."""
import json
import os
import subprocess
import sys
import warnings

import h5py
import keras
import numpy as np
import pytest

import growstage
from growstage.cli import main as cli_main
from growstage.core.errors import GrowstageError, StoreError
from growstage.io import checkpoint_dir, integrity, store
from growstage.io.checkpoint_dir import latest_checkpoint, save_checkpoint
from growstage.io.readers import detect_format, hdf5_offset
from growstage.io.readers.tf_bundle import state_file_prefix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSTM_SPLIT = [[5], [3, 3, 3, 3]]


def _snap(epoch=0):
    k = np.arange(60, dtype="f4").reshape(5, 12) + epoch
    return growstage.Snapshot({"lstm0": {"kernel": growstage.Param(k, split=LSTM_SPLIT, roles=("input", "units"))},
                               "@optimizer/lstm0": {"kernel#m": growstage.Param(np.full((5, 12), epoch, "f4"))}},
                              meta={"epoch": epoch})


def _v1(path, split='[[2], [2]]', kind="dataset"):
    """A format v1 file as growstage wrote before the structure checksum (no user block, no digest)."""
    arr = np.eye(2, dtype="f4")
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "growstage", "format_version": 1, "meta": '{"epoch": 1}', "complete": True})
        g = f.create_group("params/out")
        g.attrs["name"] = "out"
        ds = g.create_dataset("kernel", data=arr) if kind == "dataset" else g.create_group("kernel")
        ds.attrs.update({"name": "kernel", "crc32": store.crc32(arr), "split": split, "roles": "null"})
    return path


def _flip(path, pos, bit=0):
    data = bytearray(open(path, "rb").read())
    data[pos] ^= 1 << bit
    open(path, "wb").write(bytes(data))


# 1. detection by the file's own bytes

def test_detection_finds_the_signature_after_a_user_block(tmp_path):
    g = str(tmp_path / "g.h5")
    growstage.save(_snap(), g)
    assert hdf5_offset(g) == 512 and detect_format(g) == "growstage"
    k = str(tmp_path / "k.weights.h5")
    with h5py.File(k, "w", userblock_size=1024) as f:
        f.create_dataset("layers/out/vars/0", data=np.ones(2, "f4"))
    assert hdf5_offset(k) == 1024 and detect_format(k) == "keras"


def test_detection_refuses_risky_structure_before_reading_any_attribute(tmp_path, monkeypatch):
    from growstage.io import hdf5_guard

    path = str(tmp_path / "vds.h5")
    growstage.save(_snap(), path)
    with h5py.File(path, "r+") as f:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(path, "/params/lstm0/kernel", shape=(4,))  # itself: crashed HDF5 before
        f.create_virtual_dataset("self", layout)
    calls = []
    real_refuse, real_get = hdf5_guard.refuse_risky, h5py.AttributeManager.get
    monkeypatch.setattr(hdf5_guard, "refuse_risky", lambda *a, **k: (calls.append("refuse"), real_refuse(*a, **k)))
    monkeypatch.setattr(h5py.AttributeManager, "get", lambda *a, **k: (calls.append("attr"), real_get(*a, **k))[1])
    with pytest.raises(StoreError, match="vds.h5.*virtual dataset"):
        detect_format(path)
    assert calls == ["refuse"]


@pytest.mark.parametrize("content", [b"", b"GARBAGE!" * 100, b"PK\x03\x04" + b"\0" * 50, b"\0" * 600])
def test_detection_of_garbage_names_the_file(tmp_path, content):
    path = str(tmp_path / "bad.h5")
    open(path, "wb").write(content)
    with pytest.raises(StoreError, match="bad.h5"):
        growstage.open_checkpoint(path)


def test_a_tf_index_with_a_wrong_footer_is_refused_by_its_bytes(tmp_path):
    open(tmp_path / "m.index", "wb").write(b"\0" * 100)
    with pytest.raises(StoreError, match=r"m\.index.*magic number"):
        detect_format(str(tmp_path / "m"))


# 2. latest_checkpoint: any failure skipped and said; crashes and hangs survived

def test_a_bit_flip_in_the_newest_checkpoint_is_skipped_and_said(tmp_path):
    for e in range(3):
        save_checkpoint(tmp_path, _snap(e), epoch=e, keep=5)
    newest = str(tmp_path / "epoch-0002.h5")
    _flip(newest, os.path.getsize(newest) // 2, bit=3)
    with pytest.warns(RuntimeWarning, match="epoch-0002.h5.*whole-file checksum"):
        path, snap = latest_checkpoint(tmp_path)
    with snap:
        assert path.endswith("epoch-0001.h5") and snap.meta["epoch"] == 1
        assert any("epoch-0002.h5" in n and n.startswith("skipped") for n in snap.notes)


def test_any_exception_skips_the_candidate(tmp_path, monkeypatch):
    for e in range(2):
        save_checkpoint(tmp_path, _snap(e), epoch=e, keep=5)
    real = checkpoint_dir.load

    def load(path):
        if path.endswith("0001.h5"):
            raise AttributeError("'NoneType' object has no attribute 'attrs'")
        return real(path)

    monkeypatch.setattr(checkpoint_dir, "load", load)
    with pytest.warns(RuntimeWarning, match="epoch-0001.h5: AttributeError"):
        path, snap = latest_checkpoint(tmp_path)
    snap.close()
    assert path.endswith("epoch-0000.h5")


def test_intact_v2_files_never_start_a_child_process(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, _snap(0), epoch=0)
    monkeypatch.setattr(checkpoint_dir, "verify_isolated", lambda *a, **k: pytest.fail("the fast path spawned"))
    path, snap = latest_checkpoint(tmp_path)
    snap.close()


@pytest.mark.parametrize("child, expect", [("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "SIGSEGV"),
                                           ("import time; time.sleep(60)", "did not finish")])
def test_a_crash_or_hang_while_verifying_a_v1_file_costs_only_the_child(tmp_path, monkeypatch, child, expect):
    _v1(str(tmp_path / "epoch-0000.h5"))
    _v1(str(tmp_path / "epoch-0001.h5"))
    monkeypatch.setattr(integrity, "_CHILD", child)
    assert expect in integrity.verify_isolated(str(tmp_path / "epoch-0001.h5"), timeout=3)
    monkeypatch.setattr(checkpoint_dir, "verify_isolated",
                        lambda p: integrity.verify_isolated(p, timeout=3) if p.endswith("0001.h5") else None)
    with pytest.warns(RuntimeWarning, match=f"epoch-0001.h5.*{expect}"):
        path, snap = latest_checkpoint(tmp_path)
    snap.close()
    assert path.endswith("epoch-0000.h5")


def test_a_v1_checkpoint_is_verified_in_a_child_and_then_used(tmp_path):
    _v1(str(tmp_path / "epoch-0000.h5"))
    path, snap = latest_checkpoint(tmp_path)
    with snap:
        assert store.V1_NOTE in snap.notes and np.array_equal(snap["out"]["kernel"].read(), np.eye(2, dtype="f4"))
    assert integrity.verify_isolated(path) is None


# 3. every escape is a GrowstageError naming the file; the CLI says it in one line

@pytest.mark.parametrize("split", ['[["a"], [2]]', '[[2]]', '"x"', '[[2], [null]]'])
def test_a_malformed_split_attribute_is_a_store_error(tmp_path, split):
    path = _v1(str(tmp_path / "s.h5"), split=split)
    with pytest.raises(StoreError, match="s.h5: split info of out/kernel"):
        growstage.load(path)


def test_a_group_where_a_dataset_belongs_is_a_store_error(tmp_path):
    path = _v1(str(tmp_path / "g.h5"), kind="group")
    with pytest.raises(StoreError, match="g.h5: params/out/kernel is not a dataset"):
        growstage.load(path)


@pytest.mark.parametrize("call", [growstage.load, growstage.open_checkpoint,
                                  lambda p: growstage.plan(p, keras.Sequential([keras.Input((2,))]))])
def test_an_empty_path_is_a_growstage_error(call):
    with pytest.raises(GrowstageError, match="empty path"):
        call("")


def test_a_stray_reader_exception_becomes_a_store_error_naming_the_file(tmp_path, monkeypatch):
    from growstage.io.readers import npz

    path = str(tmp_path / "w.npz")
    np.savez(path, a=np.ones(2))
    monkeypatch.setattr(npz, "open_npz", lambda p: None.attrs)
    with pytest.raises(StoreError, match=r"w\.npz: cannot read it \(AttributeError"):
        growstage.open_checkpoint(path)


def test_cli_inspect_of_a_hostile_file_exits_2_with_one_line(tmp_path, capsys):
    path = str(tmp_path / "ext.weights.h5")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"S" * 32)
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/out/vars/0", shape=(8,), dtype="f4", external=[(str(secret), 0, 32)])
    assert cli_main(["inspect", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ext.weights.h5" in err and "external storage" in err
    (tmp_path / "g.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 600)  # a signature, then garbage
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "growstage.cli", "inspect", str(tmp_path / "g.h5")],
                         capture_output=True, text=True, env=env, timeout=300)
    ours = [l for l in out.stderr.splitlines() if "g.h5" in l or l.startswith("growstage")]  # TF logs aside
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(ours) == 1 and ours[0].startswith("growstage: error: ") and "g.h5: damaged HDF5" in ours[0]


# 4. TensorFlow state files may only name checkpoints beside them

def _tf_dir(d):
    import tensorflow as tf

    return tf.train.Checkpoint(w=tf.Variable([[1.0, 2.0]])).save(os.path.join(d, "ck"))


@pytest.mark.parametrize("name", ["/elsewhere/m", "../other/m", "sub/../../m"])
def test_a_state_file_naming_another_directory_is_refused(tmp_path, name):
    (tmp_path / "ck").mkdir()
    _tf_dir(str(tmp_path / "ck"))
    (tmp_path / "ck" / "checkpoint").write_text(f'model_checkpoint_path: "{name}"\n')
    with pytest.raises(StoreError, match=r"ck/checkpoint: names .*outside the checkpoint's directory"):
        growstage.open_checkpoint(str(tmp_path / "ck"))


def test_a_garbage_state_file_is_refused_naming_it_and_a_sound_one_still_loads(tmp_path):
    prefix = _tf_dir(str(tmp_path))
    with growstage.open_checkpoint(str(tmp_path)) as r:
        assert np.array_equal(r.read("w"), np.array([[1.0, 2.0]], "f4"))
    (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{os.path.abspath(prefix)}"\n')
    assert state_file_prefix(str(tmp_path)) == os.path.abspath(prefix)
    (tmp_path / "checkpoint").write_bytes(b"\xff\xfe\x00garbage\xc3")
    with pytest.raises(StoreError, match=r"checkpoint: a TensorFlow checkpoint state file that is not UTF-8"):
        growstage.open_checkpoint(str(tmp_path))


def test_bit_flip_then_resume_is_bit_identical_to_an_uninterrupted_run():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import crash_harness

    # the digest header, the user block's unread padding, the superblock, then two random bytes
    failures = crash_harness.bitflips(5, seed=3, log=lambda *a: None, positions=[3, 100, 530, None, None])
    assert failures == []


# 5. format v2: names, split info, roles, dtype, shape and metadata are checksummed

TAMPER = {
    "param name": lambda f: f["params/lstm0/kernel"].attrs.__setitem__("name", "kernal"),
    "layer name": lambda f: f["params/%40optimizer%2Flstm0"].attrs.__setitem__("name", "@optimizer/lstm1"),
    "split": lambda f: f["params/lstm0/kernel"].attrs.__setitem__("split", json.dumps([[5], [2, 4, 3, 3]])),
    "roles": lambda f: f["params/lstm0/kernel"].attrs.__setitem__("roles", json.dumps(["units", "input"])),
    "metadata": lambda f: f.attrs.__setitem__("meta", json.dumps({"epoch": 7})),
    "trainable": lambda f: f["params/lstm0/kernel"].attrs.__setitem__("trainable", False),
}


@pytest.mark.parametrize("what", list(TAMPER))
def test_tampered_structure_in_a_v2_file_is_refused(tmp_path, what):
    path = str(tmp_path / "t.h5")
    growstage.save(_snap(), path)
    with growstage.load(path) as s:
        assert s.notes == [] and s["lstm0"]["kernel"].split == LSTM_SPLIT
    with h5py.File(path, "r+") as f:
        TAMPER[what](f)
    integrity.write_digest(path)  # a consistent digest: only the structure checksum can tell
    with pytest.raises(StoreError, match="t.h5: .*structure checksum mismatch"):
        growstage.load(path)


def test_single_bit_flips_never_change_names_splits_or_roles_silently(tmp_path):
    path = str(tmp_path / "b.h5")
    growstage.save(_snap(), path)
    data = open(path, "rb").read()
    with growstage.load(path) as s:
        want = {(l, p): (prm.split, prm.roles) for l in s for p, prm in s[l].items()}
    positions = [i for word in (b"lstm0", b"[[5], [3, 3, 3, 3]]", b"units") for i in
                 range(len(data)) if data.startswith(word, i)]
    assert len(positions) >= 4
    for pos in positions:
        for bit in (0, 5):
            bad = str(tmp_path / f"flip-{pos}-{bit}.h5")
            open(bad, "wb").write(data)
            _flip(bad, pos + 1, bit)
            try:
                with growstage.load(bad) as s:
                    got = {(l, p): (prm.split, prm.roles) for l in s for p, prm in s[l].items()}
            except StoreError as e:
                assert os.path.basename(bad) in str(e)
                continue
            assert got == want, f"silent change from a flip at byte {pos + 1}, bit {bit}"


def test_a_v1_file_still_loads_and_is_reported_as_weaker(tmp_path):
    with growstage.load(_v1(str(tmp_path / "old.h5"))) as s:
        assert s.notes == [store.V1_NOTE] and s.meta == {"epoch": 1}
    with growstage.open_checkpoint(str(tmp_path / "old.h5")) as r:
        assert store.V1_NOTE in r.notes


def test_a_damaged_digest_header_is_refused_by_load(tmp_path):
    path = str(tmp_path / "d.h5")
    growstage.save(_snap(), path)
    _flip(path, 0)
    with pytest.raises(StoreError, match="d.h5: its whole-file digest"):
        growstage.load(path)


# 6. large declared sizes need allow_large=True

def test_a_sparse_dataset_declaring_far_more_than_the_file_needs_allow_large(tmp_path):
    path = str(tmp_path / "sparse.weights.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/out/vars")
        g.attrs["name"] = "out"
        g.create_dataset("0", shape=(40_000_000,), dtype="f4", chunks=(1 << 16,))  # 160 MB declared, none stored
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(StoreError, match="sparse.weights.h5: its datasets declare 160,000,000 bytes.*allow_large=True"):
        growstage.open_checkpoint(path)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
    with pytest.raises(StoreError, match="allow_large=True"):
        growstage.plan(path, model)
    with growstage.open_checkpoint(path, allow_large=True) as r:
        assert r["out/vars/0"].shape == (40_000_000,)
    assert growstage.TransferOptions(allow_large=True).allow_large is True
    assert cli_main(["inspect", path]) == 2 and cli_main(["inspect", "--allow-large", path]) == 0


def test_allow_large_reaches_growstage_files(tmp_path):
    path = str(tmp_path / "g.h5")
    growstage.save(_snap(), path)
    with h5py.File(path, "r+") as f:
        f.create_dataset("params/lstm0/huge", shape=(40_000_000,), dtype="f4", chunks=(1 << 16,))
    with pytest.raises(StoreError, match="g.h5: its datasets declare"):
        growstage.load(path)
    integrity.write_digest(path)
    with pytest.raises(StoreError, match="g.h5: .*structure checksum"):  # past the size check, the edit is seen
        growstage.load(path, allow_large=True)


def test_a_keras_archive_whose_inner_hdf5_declares_too_much_needs_allow_large(tmp_path):
    import io
    import zipfile

    inner = io.BytesIO()
    with h5py.File(inner, "w") as f:
        g = f.create_group("layers/out/vars")
        g.attrs["name"] = "out"
        g.create_dataset("0", shape=(40_000_000,), dtype="f4", chunks=(1 << 16,))
    path = str(tmp_path / "m.keras")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.weights.h5", inner.getvalue())
        z.writestr("config.json", "{}")
    with pytest.raises(StoreError, match=r"m\.keras: its datasets declare 160,000,000 bytes"):
        growstage.open_checkpoint(path)
    with growstage.open_checkpoint(path, allow_large=True) as r:
        assert r["out/vars/0"].shape == (40_000_000,)


def test_reading_an_entry_directly_fails_as_a_store_error_too(tmp_path):
    from growstage.io.readers.base import Entry, Reader

    def broken(index):
        raise IndexError("Read less bytes than requested")  # what TF's reader says of a truncated .data file

    r = Reader(str(tmp_path / "ck"), "tf2", {}, optimizer={"opt/m": Entry((2,), np.dtype("f4"), broken)})
    with pytest.raises(StoreError, match=r"ck: cannot read tensor 'opt/m': IndexError"):
        r.optimizer["opt/m"].read()


def test_the_file_tools_take_allow_large_too(tmp_path):
    path = str(tmp_path / "sparse.weights.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/out/vars")
        g.attrs["name"] = "out"
        sparse = (np.random.default_rng(0).random(17_000_000) < 0.05).astype("f4")  # 68 MB, ~2 MB gzipped
        g.create_dataset("0", data=sparse, compression="gzip", chunks=(1 << 16,))
    out = str(tmp_path / "out.h5")
    for call in (lambda **k: growstage.filetools.diff(path, path, **k),
                 lambda **k: growstage.filetools.average([path, path], out, **k),
                 lambda **k: growstage.filetools.convert(path, out, **k)):
        with pytest.raises(StoreError, match="allow_large=True"):
            call()
        call(allow_large=True)
    with growstage.open_checkpoint(out, allow_large=True) as r:
        assert np.array_equal(r.read("out/vars/0"), sparse)
    for cmd in (["diff", path, path], ["average", path, "-o", out], ["convert", path, out]):
        assert cli_main(cmd) == 2 and cli_main(cmd + ["--allow-large"]) == 0, cmd


def test_open_returnn_and_from_checkpoint_take_allow_large(tmp_path):
    from growstage.initializers import FromCheckpoint
    from growstage.returnn import open_returnn

    path = str(tmp_path / "big.weights.h5")
    values = (np.random.default_rng(1).random((4_300, 4_000)) < 0.05).astype("f4")  # 68.8 MB, ~2 MB gzipped
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/enc/vars")
        g.attrs["name"] = "enc"
        g.create_dataset("0", data=values, compression="gzip", chunks=(256, 256))
    with pytest.raises(StoreError, match="allow_large=True"):
        open_returnn(path)
    with pytest.raises(growstage.PlanError, match="'enc/vars/0' is no RETURNN param name"):  # past the size check
        open_returnn(path, allow_large=True)
    init = FromCheckpoint(path, "enc/vars/0")
    with pytest.raises(StoreError, match="allow_large=True"):
        init((4_300, 4_000))
    init = FromCheckpoint(path, "enc/vars/0", allow_large=True)
    assert np.array_equal(keras.ops.convert_to_numpy(init((4_300, 4_000))), values)
    assert FromCheckpoint.from_config(init.get_config()).allow_large is False  # never from a config (issue 26)
