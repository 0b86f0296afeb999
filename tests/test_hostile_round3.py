"""Hostile inputs, round three (issue 26): writers that refuse to replace what they must not, paths
that are never imported, FromCheckpoint in an untrusted model file, run identity, hangs, net dicts."""
import os
import socket
import stat

import numpy as np
import pytest

import growstage
from growstage.cli import main as cli_main
from growstage.core.errors import GrowstageError, StoreError
from growstage.filetools import average, convert
from growstage.export import save_safetensors


def _src(tmp_path, name="a.h5", v=1.0):
    return str(growstage.save({"out": {"kernel": np.full((3, 2), v, "f4")}}, str(tmp_path / name)))


def _special(tmp_path, kind):
    p = str(tmp_path / f"out-{kind}")
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        os.mkdir(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(p)
        s.close()
    elif kind == "devnull":
        os.symlink(os.devnull, p)  # a link to /dev/null is /dev/null
    return p


def _writers(tmp_path):
    src = _src(tmp_path)
    return {"save": lambda out: growstage.save({"w": {"v": np.ones(2)}}, out),
            "average": lambda out: average([src], out),
            "convert": lambda out: convert(src, out),
            "export": lambda out: save_safetensors(src, out, types={"out": "Dense"}),
            "cli-average": lambda out: cli_main(["average", src, "-o", out]),
            "cli-convert": lambda out: cli_main(["convert", src, out]),
            "cli-export": lambda out: cli_main(["export", src, out, "--to", "torch", "--type", "out=Dense"])}


def _mode(path):
    return os.lstat(path).st_mode, os.stat(path).st_mode


@pytest.mark.parametrize("kind", ["fifo", "dir", "socket", "devnull"])
def test_writers_refuse_an_out_that_is_not_a_regular_file(tmp_path, kind):
    for name, write in _writers(tmp_path).items():
        out = _special(tmp_path, kind)
        before = _mode(out)
        if name.startswith("cli"):
            assert write(out) == 2, name
        else:
            with pytest.raises(StoreError, match="not a regular file"):
                write(out)
        assert _mode(out) == before, name  # stays what it was
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".growstage-tmp") or ".tmp" in f]
        (os.rmdir if kind == "dir" else os.unlink)(out)


def test_writers_refuse_an_out_that_is_an_input_by_any_spelling(tmp_path):
    src = _src(tmp_path)
    data = open(src, "rb").read()
    link = str(tmp_path / "link.h5")
    os.symlink(src, link)
    os.mkdir(tmp_path / "sub")
    for out in (src, link, str(tmp_path / "sub" / ".." / "a.h5")):
        with pytest.raises(StoreError, match="is an input"):
            average([src], out)
        with pytest.raises(StoreError, match="is an input"):
            convert(link, out)
        with pytest.raises(StoreError, match="is an input"):
            save_safetensors(src, out, types={"out": "Dense"})
        assert cli_main(["average", src, src, "-o", out]) == 2
        with growstage.load(src) as snap, pytest.raises(StoreError, match="is an input"):
            growstage.save(snap, out)  # the file a lazy snapshot still reads from
    assert open(src, "rb").read() == data


def test_an_out_inside_a_fit_checkpoint_dir_input_is_refused(tmp_path):
    from growstage.io.checkpoint_dir import save_checkpoint

    run = tmp_path / "run"
    for e in (1, 2):
        save_checkpoint(str(run), growstage.Snapshot({"w": {"v": growstage.Param(np.full(2, e, "f4"))}}), epoch=e)
    before = {f: open(run / f, "rb").read() for f in os.listdir(run)}
    for out in (run / "epoch-0002.h5", run / "avg.h5"):
        with pytest.raises(StoreError, match="inside the input folder"):
            convert(str(run), str(out))
        assert cli_main(["average", str(run), "-o", str(out)]) == 2
    assert {f: open(run / f, "rb").read() for f in os.listdir(run)} == before


@pytest.mark.tf_only
def test_tf_prefix_files_are_refused_as_outputs_and_export_reads_a_prefix(tmp_path, capsys):
    import tensorflow as tf

    ckpt = tf.train.Checkpoint(w=tf.Variable(np.ones((3, 2), "f4")))
    prefix = ckpt.write(str(tmp_path / "model"))
    before = {f: open(tmp_path / f, "rb").read() for f in os.listdir(tmp_path)}
    data = [f for f in os.listdir(tmp_path) if ".data-" in f][0]
    for given in (prefix, prefix + ".index"):
        for out in (prefix + ".index", str(tmp_path / data), prefix):
            with pytest.raises(StoreError, match="TensorFlow checkpoint"):
                convert(given, out)
    assert {f: open(tmp_path / f, "rb").read() for f in os.listdir(tmp_path)} == before
    out = str(tmp_path / "o.safetensors")
    assert cli_main(["export", prefix, out, "--to", "torch", "--unknown", "raw"]) == 0
    assert os.path.getsize(out) > 0


def test_a_path_is_never_imported(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "weights.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef final(): return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli_main(["export", "weights:final.h5", "o.safetensors", "--to", "torch"]) == 2
    assert "no such file" in capsys.readouterr().err
    for argv in (["inspect", "weights:final"], ["convert", "weights:final", "o.h5"], ["diff", "weights:final", "x"],
                 ["average", "weights:final", "-o", "o.h5"], ["export", "weights.py:final", "o.st", "--to", "torch"]):
        assert cli_main(argv) == 2, argv
    assert not marker.exists()
    assert not os.path.exists("o.safetensors") and not os.path.exists("o.h5")
