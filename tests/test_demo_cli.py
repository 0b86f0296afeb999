import json
import os
import subprocess
import sys

import numpy as np

import growstage
from growstage.cli import main


def test_demo_prints_reports_losses_and_writes_plot(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs-per-stage", "1"]) == 0
    out = capsys.readouterr().out
    assert "stage 2 from epoch 3: rebuilt" in out
    assert "blstm2/forward_layer/cell/kernel" in out and "block-wise 2x4" in out
    assert out.count("epoch ") >= 3 and "loss" in out
    png = tmp_path / "loss.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-0001.h5", "epoch-0002.h5"]


def test_inspect_lists_params_and_fails_clearly(tmp_path, capsys):
    path = growstage.save({"out": {"kernel": np.zeros((3, 2), "f4")}}, tmp_path / "s.h5", meta={"epoch": 4})
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"][0]["name"] == "out/kernel" and data["meta"]["epoch"] == 4
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"nope")
    r = subprocess.run([sys.executable, "-m", "growstage.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.h5: not a format growstage reads" in r.stderr
