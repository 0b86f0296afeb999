import json
import os
import tempfile
from pathlib import Path
import subprocess
import sys

import numpy as np

import growstage
from growstage.cli import main


def test_demo_prints_reports_losses_and_writes_plot(tmp_path, capsys, monkeypatch):
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["demo", "--epochs-per-stage", "1"]) == 0
    assert os.listdir(work) == []  # without --out nothing is written into the working directory
    out = capsys.readouterr().out
    tmp_path = Path(out.split("plot: ")[1].split()[0]).parent
    assert str(tmp_path).startswith(tempfile.gettempdir()) and "validation loss" in out
    assert "stage 2 from epoch 2: rebuilt" in out
    assert "blstm2/forward_layer/cell/kernel" in out and "block-wise 2x4" in out
    assert out.count("epoch ") >= 3 and "loss" in out
    png = tmp_path / "loss.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["epoch-0001.h5", "epoch-0002.h5"]  # epochs from 0


def test_inspect_lists_params_and_fails_clearly(tmp_path, capsys):
    path = growstage.save({"out": {"kernel": np.zeros((3, 2), "f4")}}, tmp_path / "s.h5", meta={"epoch": 4})
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"][0]["name"] == "out/kernel" and data["meta"]["epoch"] == 4
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"nope")
    r = subprocess.run([sys.executable, "-m", "growstage.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.h5: not a format growstage reads" in r.stderr


def test_demo_plot_labels_every_stage_and_has_a_validation_curve():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from growstage.demo import figure
    from growstage.train.fitting import GrowingHistory

    hist = GrowingHistory(epochs=[{"epoch": e, "stage": e // 2, "loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)}
                                  for e in range(6)])
    fig = figure(hist, plt)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["stage 0: 1 BLSTM x 16", "stage 1: 2 BLSTM x 16",
                                                "stage 2: 3 BLSTM x 24"]
    assert [line.get_label() for line in ax.get_lines()] == ["training loss", "validation loss"]
    plt.close(fig)
