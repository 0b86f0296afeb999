"""Issue 26 item 6: a block spliced before an attribute's strings made HDF5 loop forever.

HDF5 keeps every variable-length string (string attributes included) in a global heap
collection; when a splice or an overwrite leaves the collection's free-space object with size 0,
HDF5 1.14 walks that object forever the first time it reads a string from the collection.  Found
by splicing 512-, 1024- and 2048-byte blocks (zeros, random bytes, an HDF5 signature block, a copy
of other bytes of the file) before attributes of Keras 2 ``.h5`` files.  Every entry point must
answer with a ``GrowstageError`` naming the file: ``open_checkpoint``, ``growstage.load``, ``growstage
inspect`` and RETURNN's ``load_on_init``.  The reads run in a child process with a timeout, so a
regression fails here instead of hanging the suite.
"""
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

import growstage
from growstage.core.errors import StoreError
from growstage.io.hdf5_guard import refuse_bad_heaps
from growstage.io.integrity import write_digest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_space_object(data: bytes) -> int:
    """The byte offset of the first global heap collection's free-space object (index 0)."""
    at = data.index(b"GCOL\x01")
    end, p = at + int.from_bytes(data[at + 8:at + 16], "little"), at + 16
    while p + 16 <= end:
        index, size = int.from_bytes(data[p:p + 2], "little"), int.from_bytes(data[p + 8:p + 16], "little")
        if index == 0:
            return p
        p += 16 + (size + 7) // 8 * 8
    raise AssertionError("no free-space object in the heap")


def _break(data: bytes, how: str) -> bytes:
    q = _free_space_object(data)
    if how == "zero size":
        return data[:q + 8] + bytes(8) + data[q + 16:]
    block = int(how.split()[1])  # "splice 512": a zeroed block inserted before the strings' free space
    return data[:q] + bytes(block) + data[q:]


def _keras3(path):
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.attrs["name"] = "out"
        g.create_dataset("0", data=np.ones((3, 2), "f4"))
        g.create_dataset("1", data=np.zeros(2, "f4"))
    return path


def _keras2(path):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"out"]
        f.attrs["keras_version"] = "2.15.0"
        g = f.create_group("out")
        g.attrs["weight_names"] = [b"out/kernel:0", b"out/bias:0"]
        g.create_dataset("out/kernel:0", data=np.ones((3, 2), "f4"))
        g.create_dataset("out/bias:0", data=np.zeros(2, "f4"))
    return path


def _growstage(path):
    growstage.save({"out": {"kernel": np.ones((3, 2), "f4"), "bias": np.zeros(2, "f4")}}, path)
    return path


def _hostile(tmp_path, kind, how):
    src = {"keras3": _keras3, "keras2": _keras2, "growstage": _growstage, "keras": _keras3}[kind](
        str(tmp_path / f"src-{kind}.h5"))
    data = _break(open(src, "rb").read(), how)
    suffix = {"keras": ".keras", "keras3": ".weights.h5"}.get(kind, ".h5")
    out = str(tmp_path / f"{kind}-{how.replace(' ', '-')}{suffix}")
    if kind == "keras":
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("model.weights.h5", data)
            z.writestr("config.json", "{}")
    else:
        open(out, "wb").write(data)
    if kind == "growstage":
        write_digest(out)  # crafted with a valid digest: HDF5 parses it
    return out


CHILD = """
import io, contextlib, json, sys, warnings
warnings.simplefilter("ignore")
import growstage
from growstage.cli import main as cli_main
import growstage.returnn as gr

def net(path):
    sub = {"output": {"class": "linear", "n_out": 2, "from": "data"}}
    return {"sub": {"class": "subnetwork", "from": "data", "subnetwork": sub, "load_on_init": path},
            "output": {"class": "linear", "n_out": 2, "from": "sub"}}

def read(path):
    with growstage.open_checkpoint(path) as r:
        return {k: r[k].read() for k in r}

ENTRY = {"open_checkpoint": read, "load": growstage.load, "load_on_init": lambda p: gr.build_model(net(p), {"data": {"dim": 3}}),
         "inspect": lambda p: cli_main(["inspect", p])}
out = []
for path, entry in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            got = ENTRY[entry](path)
        out.append([path, entry, f"returned {got!r}"[:200], err.getvalue()])
    except growstage.GrowstageError as e:
        out.append([path, entry, "GrowstageError", str(e)])
    except BaseException as e:
        out.append([path, entry, type(e).__name__, str(e)])
print(json.dumps(out))
"""

CASES = [(kind, how) for kind in ("keras3", "keras2", "growstage", "keras")
         for how in ("zero size", "splice 512", "splice 1024")]


def test_a_spliced_heap_is_refused_by_every_entry_point_within_its_timeout(tmp_path):
    runs = []
    for kind, how in CASES:
        path = _hostile(tmp_path, kind, how)
        runs += [(path, "open_checkpoint"), (path, "inspect")]
        if kind == "growstage":
            runs.append((path, "load"))
        if how == "splice 512":
            runs.append((path, "load_on_init"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # a hang would be HDF5 spinning in C: only a child process can be stopped (TimeoutExpired fails the test)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(runs)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(runs) == 31
    for path, entry, outcome, message in results:
        if entry == "inspect":
            assert outcome == "returned 2" and "global heap" in message and os.path.basename(path) in message, \
                (path, message)
        else:
            assert outcome == "GrowstageError" and "global heap" in message and os.path.basename(path) in message, \
                (path, entry, outcome, message)


@pytest.mark.parametrize("kind", ["keras3", "keras2", "growstage"])
def test_sound_heaps_pass_and_a_broken_one_is_named(tmp_path, kind):
    path = _hostile(tmp_path, kind, "zero size")
    sound = str(tmp_path / f"src-{kind}.h5")
    refuse_bad_heaps(sound, sound)  # the unbroken source: accepted
    with growstage.open_checkpoint(sound) as r:
        assert np.array_equal(r[sorted(r)[-1]].read(), np.ones((3, 2), "f4"))
    with pytest.raises(StoreError, match=r"global heap at byte \d+: object at byte \d+ has an impossible size \(0\)"):
        refuse_bad_heaps(path, path)
    data = open(path, "rb").read()
    with pytest.raises(StoreError, match="global heap"):
        refuse_bad_heaps(data, path)  # bytes, as the HDF5 inside a .keras archive is read


def test_a_collection_reaching_past_the_file_or_overlapping_without_end_is_refused():
    head = b"GCOL" + bytes([1, 0, 0, 0])
    obj = (1).to_bytes(2, "little") + bytes(6) + (8).to_bytes(8, "little") + bytes(8)  # one 8-byte string
    free = bytes(8) + (16).to_bytes(8, "little")  # the free-space object, its 16-byte header included
    refuse_bad_heaps(head + (56).to_bytes(8, "little") + obj + free, "ok.h5")
    with pytest.raises(StoreError, match="impossible size"):
        refuse_bad_heaps(head + (4096).to_bytes(8, "little") + obj + free, "short.h5")  # size beyond the file
    with pytest.raises(StoreError, match="impossible size"):
        refuse_bad_heaps(head + (56).to_bytes(8, "little") + obj + bytes(8) + (4).to_bytes(8, "little"), "tiny.h5")
    many = b"".join(head + (len(head) + 8 + 16 * 64).to_bytes(8, "little") for _ in range(64))
    with pytest.raises(StoreError, match="impossible size"):
        refuse_bad_heaps(many, "overlap.h5")  # collections inside collections: bounded work, then refused
