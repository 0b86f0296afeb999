"""Crash safety, concurrent writers, tf.distribute, no code execution, fault injection."""
import os
import pickle
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import StoreError, TransferError

import crash_harness
from conftest import build_blstm

HERE = os.path.dirname(__file__)


def test_sigkill_during_writes_never_leaves_a_bad_file(tmp_path):
    stats: dict = {}
    failures = crash_harness.run(25, writers=1, seed=1, directory=str(tmp_path), log=lambda s: None, stats=stats)
    assert failures == []
    assert stats["mid_write"] > 0, "no kill landed during a write: the harness tested nothing"


@pytest.mark.tf_only
def test_prepare_ahead_killed_then_its_resume_killed_resumes_bit_identical():
    # the harness's hardest turn, once (python tests/crash_harness.py --prepare-ahead 200 runs all three):
    # fit(prepare_ahead=True) killed in the epoch before a rebuild, the resuming process killed early
    # (its first epoch tracing beside the thread), resumed again: a normal exit (no SIGSEGV), bit-identical
    seen: list[str] = []
    assert crash_harness.prepare_ahead_kills(1, seed=5, log=seen.append, phases=("resume",)) == []
    assert seen[0].startswith("kill 0 (resume, epoch ") and seen[0].endswith(": ok")



def test_two_writers_one_directory_and_a_reader_never_sees_half_a_file(tmp_path):
    directory = str(tmp_path)
    env = dict(os.environ, PYTHONPATH=crash_harness.ROOT)
    procs = [subprocess.Popen([sys.executable, crash_harness.__file__, "--writer", directory, "--offset", str(i),
                               "--stride", "2"], stdout=subprocess.DEVNULL, env=env) for i in range(2)]
    seen, bad, writers_seen = 0, [], set()
    from growstage.io.checkpoint_dir import list_checkpoints, verify
    from growstage.io.store import load
    # read until both writers' files were seen many times; the cap only guards against a hang
    give_up = time.monotonic() + 300
    while (seen < 40 or len(writers_seen) < 2) and time.monotonic() < give_up:
        for _, path in list_checkpoints(directory):
            try:
                with load(path) as snap:
                    verify(snap)
                    epoch = int(snap.meta["epoch"])
                    assert np.array_equal(snap["enc"]["bias"].read(), np.full(1024, epoch, "f4"))
                    seen += 1
                    writers_seen.add(epoch % 2)
            except StoreError as e:
                if os.path.exists(path):  # a rotated-away file is gone, not damaged
                    bad.append(str(e))
    for p in procs:
        p.kill()
        p.wait()
    assert bad == [] and seen > 0
    assert writers_seen == {0, 1}, "the reader saw both writers' files"
    assert crash_harness.check(directory, None) is None


@pytest.mark.tf_only
def test_mirrored_strategy_two_logical_cpus():
    r = subprocess.run([sys.executable, os.path.join(HERE, "distribute_script.py")], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=crash_harness.ROOT))
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout[-2000:] + r.stderr[-3000:]


def test_keras_file_with_lambda_payload_never_runs_it(tmp_path):
    marker = tmp_path / "pwned"

    # the marker path is a constant inside the lambda's code, which Keras marshals into the file
    payload = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]")
    x = keras.Input((3,))
    h = keras.layers.Dense(4, name="d")(x)
    h = keras.layers.Lambda(payload, name="evil")(h)
    m = keras.Model(x, keras.layers.Dense(2, name="out")(h))
    path = str(tmp_path / "evil.keras")
    m.save(path)
    marker.unlink()
    x2 = keras.Input((3,))
    target = keras.Model(x2, keras.layers.Dense(2, name="out")(keras.layers.Dense(4, name="d")(x2)))
    growstage.transfer(path, target)
    growstage.filetools.inspect(path, stats=True)
    assert not marker.exists()
    assert np.array_equal(target.get_layer("d").kernel.numpy(), m.get_layer("d").kernel.numpy())
    # the payload is real: Keras itself runs it when told to trust the file
    keras.config.enable_unsafe_deserialization()
    try:
        keras.models.load_model(path, safe_mode=False)
    except Exception:
        pass
    assert marker.exists()


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_payloads_are_never_unpickled(tmp_path):
    marker = str(tmp_path / "pwned")
    npz = str(tmp_path / "evil.npz")
    np.savez(npz, w=np.array([_Payload(marker)], dtype=object), ok=np.ones(2, "f4"))
    assert not os.path.exists(marker)
    for call in (lambda: growstage.open_checkpoint(npz), lambda: growstage.filetools.inspect(npz),
                 lambda: growstage.transfer(npz, build_blstm(2, 1), ignore_unused=True)):
        with pytest.raises(StoreError, match="evil.npz"):
            call()
    assert not os.path.exists(marker)
    raw = tmp_path / "evil.pkl.h5"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(StoreError, match="evil.pkl.h5"):
        growstage.open_checkpoint(raw)
    assert not os.path.exists(marker)
    np.load(npz, allow_pickle=True)["w"]  # what growstage refuses to do
    assert os.path.exists(marker)


def test_read_error_part_way_through_a_streamed_file_restores_everything(tmp_path):
    src, target = build_blstm(4, depth=3, seed=1), build_blstm(4, depth=3, seed=2)
    path = str(tmp_path / "s.h5")
    growstage.save(growstage.snapshot(src), path)
    import h5py
    with h5py.File(path, "r") as f:
        ds = f["params/blstm2"]["backward_layer%2Fcell%2Fkernel"]
        offset, nbytes = ds.id.get_offset(), ds.id.get_storage_size()
    with open(path, "r+b") as fp:
        fp.seek(offset + nbytes // 2)
        byte = fp.read(1)
        fp.seek(offset + nbytes // 2)
        fp.write(bytes([byte[0] ^ 0x10]))
    before = [w.numpy().copy() for w in target.weights]
    with pytest.raises(TransferError, match="checksum mismatch in param blstm2/backward_layer/cell/kernel"):
        growstage.transfer(path, target)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, target.weights))


def test_nonfinite_values_reported_or_refused(tmp_path):
    src, target = build_blstm(3, depth=1, seed=1), build_blstm(3, depth=1, seed=2)
    vd = growstage.snapshot(src).values_dict()
    vd["out"]["kernel"][0, 0] = np.nan
    vd["out"]["bias"][1] = np.inf
    rep = growstage.transfer(vd, target)
    assert any("out/kernel: 1 non-finite" in n for n in rep.notes) and any("out/bias: 1" in n for n in rep.notes)
    fresh = build_blstm(3, depth=1, seed=2)
    before = [w.numpy().copy() for w in fresh.weights]
    with pytest.raises(TransferError, match="non-finite"):
        growstage.transfer(vd, fresh, on_nonfinite="error")
    assert all(np.array_equal(a, w.numpy(), equal_nan=True) for a, w in zip(before, fresh.weights))
