"""Hostile sharded snapshots (issue 28's fresh trial): an index.json edited with its structure CRC
recomputed (a checksum is no signature), links and FIFOs in the folder, a writer killed mid-write,
and writer targets it must not replace.  Every case is a clear StoreError or a correct read; nothing
outside the folder is read, nothing hangs.  The reader is numpy + safetensors only: these run on every
backend, with blocks made the way a device array's shards are (no mesh needed)."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import growstage
from growstage.core.errors import StoreError
from growstage.core.values import Param, Snapshot
from growstage.io.integrity import structure_crc
from growstage.io.sharded_store import _row, load_sharded, save_sharded

pytest.importorskip("safetensors")
K = np.arange(32, dtype="f4").reshape(4, 8)


class Shards:
    """A value that knows its shards, as a device array does: two column blocks of ``K``."""
    shape, dtype = K.shape, K.dtype

    def shards(self):
        return [(((0, 4), (a, a + 4)), i, lambda a=a: K[:, a:a + 4]) for i, a in enumerate((0, 4))]


def _saved(tmp_path, name="snap"):
    path = tmp_path / name
    save_sharded(Snapshot({"l": {"kernel": Param(Shards()), "bias": Param(np.ones(3, "f4"))}}), path)
    return path


def _edit(path, fn):
    index = json.loads((path / "index.json").read_text())
    fn(index)
    index["structure_crc32"] = structure_crc(index["meta"], [_row(e) for e in index["params"]])
    (path / "index.json").write_text(json.dumps(index))


def _read_all(path):
    with growstage.load(path) as snap:
        return {k: p.read() for k, p in snap.flat().items()}


def _blocks(ix):
    return ix["params"][0]["blocks"]


EDITS = {  # each with its CRC recomputed: only the index's sense can refuse it
    "a duplicate block hiding a hole": (lambda ix: _blocks(ix).__setitem__(1, copy.deepcopy(_blocks(ix)[0])),
                                        "overlap or leave a hole"),
    "blocks that overlap": (lambda ix: _blocks(ix)[1].update(bounds=[[0, 4], [3, 7]]), "overlap or leave a hole"),
    "a block beyond the shape": (lambda ix: _blocks(ix)[1].update(bounds=[[0, 4], [8, 12]]), "not a block of its"),
    "bounds as strings": (lambda ix: _blocks(ix)[1].update(bounds=[["0", "4"], ["4", "8"]]), "not a block of its"),
    "a missing crc32": (lambda ix: _blocks(ix)[0].pop("crc32"), "not a block of its"),
    "a path out of the folder": (lambda ix: _blocks(ix)[0].update(file="../x.safetensors"), "not a shard file"),
    "an object dtype": (lambda ix: ix["params"][0].update(dtype="object"), "not one a sharded snapshot stores"),
    "a dtype the file does not hold": (lambda ix: ix["params"][0].update(dtype="float64"), "holds F32"),
    "a huge shape (memory bomb)": (lambda ix: (ix["params"][0].update(shape=[4, 10 ** 11]),
                                              _blocks(ix)[1].update(bounds=[[0, 4], [4, 10 ** 11]])), "holds F32"),
    "a negative shape": (lambda ix: ix["params"][0].update(shape=[-4, 8]), "not a list of sizes"),
    "a param twice": (lambda ix: ix["params"].append(copy.deepcopy(ix["params"][0])), "appears twice"),
    "metadata not an object": (lambda ix: ix.update(meta="[1]"), "not a JSON object"),
    "a layer name not a string": (lambda ix: ix["params"][0].update(layer=3), "no layer and param names"),
    "roles not a list": (lambda ix: ix["params"][0].update(roles=5), "roles of l/kernel"),
    "trainable a string": (lambda ix: ix["params"][0].update(trainable="no"), "not true/false"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_an_edited_index_with_a_recomputed_crc_is_refused_before_any_read(tmp_path, case):
    path = _saved(tmp_path)
    edit, match = EDITS[case]
    _edit(path, edit)
    with pytest.raises(StoreError, match=match):
        _read_all(path)


def test_links_fifos_and_folders_in_the_snapshot_are_refused_not_followed_nor_waited_on(tmp_path):
    outside = _saved(tmp_path, "outside")  # an intact snapshot whose files a link points at
    path = _saved(tmp_path)
    os.unlink(path / "device-00000.safetensors")
    os.symlink(outside / "device-00000.safetensors", path / "device-00000.safetensors")
    with pytest.raises(StoreError, match="device-00000.safetensors is a symbolic link"):
        _read_all(path)
    path = _saved(tmp_path, "index-link")
    os.replace(path / "index.json", tmp_path / "elsewhere.json")
    os.symlink(tmp_path / "elsewhere.json", path / "index.json")
    with pytest.raises(StoreError, match="index index.json is a symbolic link"):
        growstage.load(path)
    path = _saved(tmp_path, "fifo")
    os.unlink(path / "device-00001.safetensors")
    os.mkfifo(path / "device-00001.safetensors")
    # a writer end held open: were the FIFO opened after all, the read would fail here, not hang the suite
    fd = os.open(path / "device-00001.safetensors", os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(StoreError, match="device-00001.safetensors is not a regular file"):
            _read_all(path)
    finally:
        os.close(fd)
    path = _saved(tmp_path, "gone")
    os.unlink(path / "device-00001.safetensors")
    with pytest.raises(StoreError, match="device-00001.safetensors is missing"):
        _read_all(path)
    os.unlink(path / "index.json")
    with pytest.raises(StoreError, match="a folder without index.json"):
        growstage.load(path)
    from growstage.io.readers import detect_format  # what transfer and the command line ask first

    with pytest.raises(StoreError, match="shard files without its index.json"):  # not "HF without config"
        detect_format(str(path))


def test_intact_blocks_read_back_and_a_region_reads_only_its_blocks(tmp_path):
    path = _saved(tmp_path)
    assert np.array_equal(_read_all(path)["l/kernel"], K)
    with load_sharded(path) as snap:
        assert np.array_equal(snap["l"]["kernel"].value.read_region(((1, 3), (4, 6))), K[1:3, 4:6])
        with pytest.raises(StoreError, match="not inside"):
            snap["l"]["kernel"].value.read_region(((0, 4), (0, 9)))
    import ml_dtypes  # a raw (bfloat16) block passes the stored-size check too

    bf = np.arange(6, dtype="f4").astype(ml_dtypes.bfloat16)
    save_sharded({"l": {"w": bf}}, tmp_path / "bf")
    assert np.array_equal(_read_all(tmp_path / "bf")["l/w"], bf)


def test_the_writer_replaces_only_a_snapshot_folder_holding_nothing_else(tmp_path):
    snap = {"l": {"w": np.ones((2, 2), "f4")}}
    app = tmp_path / "app"
    app.mkdir()
    (app / "index.json").write_text('{"name": "not ours"}')
    (app / "main.js").write_text("x")
    with pytest.raises(StoreError, match="not a sharded growstage snapshot .it also holds main.js"):
        growstage.save(snap, app, sharded=True)
    (app / "main.js").unlink()
    with pytest.raises(StoreError, match="not a sharded growstage snapshot"):
        growstage.save(snap, app, sharded=True)
    assert os.listdir(app) == ["index.json"]
    mine = growstage.save(snap, tmp_path / "mine", sharded=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="it also holds notes.txt"):
        growstage.save(snap, mine, sharded=True)
    (mine / "notes.txt").unlink()
    growstage.save({"l": {"w": np.zeros((2, 2), "f4")}}, mine, sharded=True)  # its own snapshot: replaced
    assert _read_all(mine)["l/w"].sum() == 0
    with growstage.load(mine) as src:
        with pytest.raises(StoreError, match="lies inside the input folder"):
            growstage.save(src, mine / "sub", sharded=True)
    with pytest.raises(StoreError, match="does not exist: create it first"):
        growstage.save(snap, tmp_path / "nope" / "x", sharded=True)
    with pytest.raises(StoreError, match="not an output path"):
        growstage.save(snap, "", sharded=True)
    os.symlink(mine, tmp_path / "link")  # a link to a snapshot: the link is replaced, nothing left behind
    growstage.save(snap, tmp_path / "link", sharded=True)
    assert not os.path.islink(tmp_path / "link") and os.path.isdir(mine)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".growstage-tmp")]


def test_a_writer_killed_mid_write_leaves_no_checkpoint_and_resume_cleans_up(tmp_path):
    code = ("import os, signal, sys, numpy as np\n"
            "from growstage.core.values import Param, Snapshot\n"
            "from growstage.io.checkpoint_dir import save_checkpoint\n"
            "class Dies:\n"
            "    shape, dtype = (2,), np.dtype('f4')\n"
            "    def read(self):\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "snap = Snapshot({'a': {'w': Param(np.ones(2, 'f4'))}, 'z': {'w': Param(Dies())}})\n"
            "save_checkpoint(sys.argv[1], snap, epoch=0, sharded=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, timeout=120)
    assert run.returncode == -9, run.stderr
    left = [n for n in os.listdir(tmp_path) if n.startswith(".growstage-tmp")]
    assert left and not (tmp_path / "epoch-0000").exists()  # absent, not half there
    with pytest.raises(StoreError, match="a folder without index.json"):
        growstage.load(tmp_path / left[0])
    from growstage.io.checkpoint_dir import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None and os.listdir(tmp_path) == []


def test_transfer_optimizer_from_a_path_says_what_to_pass():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="out")])
    model.compile(optimizer="adam", loss="mse")
    _, report = growstage.rebuild(lambda: model, {"out": {"kernel": np.ones((2, 3), "f4")}}, mode="subset",
                                  ignore_missing=True)
    with pytest.raises(growstage.GrowstageError, match="pass the old model .* not a str.*resume=True"):
        growstage.transfer_optimizer("ckpt/epoch-0003", model, report)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2(RENAME_EXCHANGE) is Linux's")
def test_overwriting_a_snapshot_swaps_in_one_step_never_leaving_the_path_empty(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: moved.append((str(a), str(b))) or real_replace(a, b))
    monkeypatch.setattr("shutil.rmtree", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed right after the swap, before the old one is removed
        save_sharded({"l": {"w": np.zeros(2, "f4")}}, path)
    assert not [m for m in moved if m[0] == str(path)]  # the old folder was never moved away from the path
    assert list(_read_all(path)) == ["l/w"]  # the new snapshot, complete


def test_inspect_calls_a_sharded_snapshot_a_folder(tmp_path, capsys):
    from growstage.cli import main

    assert main(["inspect", str(_saved(tmp_path))]) == 0
    assert "growstage folder" in capsys.readouterr().out
