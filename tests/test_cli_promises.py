"""The CLI keeps the library's promises (issue 12, item 6): every option and positional documented,
the library's default mode, fit checkpoint directories as sources, a hint for scope renames, and
rich progress bars on a terminal only."""
import io
import json

import keras
import numpy as np
import pytest

import growstage
from growstage.cli import build_parser, main
from growstage.demo import build_parser as demo_parser
from growstage.filetools import progress
from growstage.train.checkpoints import write_checkpoint


def _subparsers(ap):
    for action in ap._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    raise AssertionError("no subcommands")


def test_every_subcommand_documents_every_option_and_positional():
    parsers = dict(_subparsers(build_parser()))
    parsers["demo"], parsers["growstage"] = demo_parser(), build_parser()
    undocumented = [f"{cmd} {a.dest}" for cmd, p in parsers.items() for a in p._actions
                    if a.dest != "help" and not (a.help or "").strip()]
    assert undocumented == []
    for cmd, p in parsers.items():
        assert p.format_help().count("\n") > 3, cmd


def test_plan_defaults_to_the_librarys_exact_mode():
    args = build_parser().parse_args(["plan", "x.h5", "--into", "m:f"])
    assert args.mode == "exact"


def _fit_dir(tmp_path):
    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Dense(2, name="out")(x))
    m.compile(optimizer="adam", loss="mse")
    d = tmp_path / "ckpt"
    for e in range(3):
        m.get_layer("out").bias.assign(np.full(2, e, "f4"))
        write_checkpoint(d, m, epoch=e, stage=0, keep=5)
    raw = bytearray((d / "epoch-0002.h5").read_bytes())  # the newest file is damaged: epoch 1 is the latest
    raw[-200:] = b"\0" * 200
    (d / "epoch-0002.h5").write_bytes(bytes(raw))
    return d, m


def test_inspect_and_transfer_take_a_fit_checkpoint_directory(tmp_path, capsys):
    d, m = _fit_dir(tmp_path)
    assert main(["inspect", str(d), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"].endswith("epoch-0001.h5")
    assert any("latest verified training checkpoint is epoch-0001.h5" in n for n in info["notes"])
    target = keras.models.clone_model(m)
    rep = growstage.transfer(str(d), target)
    assert rep.counts() == {"copied": 2}
    assert target.get_layer("out").bias.numpy().tolist() == [1.0, 1.0]


def test_a_directory_that_is_no_checkpoint_says_what_to_give(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    assert "epoch-NNNN.h5" in capsys.readouterr().err


def test_rename_of_a_scope_without_slashes_gets_a_hint(tmp_path, capsys):
    src = tmp_path / "w.npz"
    np.savez(src, **{"enc/kernel": np.ones((2, 2), "f4"), "enc/bias": np.ones(2, "f4")})
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--rename", "enc=encoder"]) == 2
    err = capsys.readouterr().err
    assert "'enc' is the scope of 2 names" in err and "--rename enc/=NEW/" in err
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--rename", "enc/=encoder"]) == 2
    assert "--rename enc/=encoder/" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--rename", "enc/=encoder/"]) == 0


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_rich_bar_on_a_terminal_and_silent_when_piped():
    tty, pipe = _Tty(), io.StringIO()
    assert list(progress(range(4), 4, "convert", stream=tty)) == [0, 1, 2, 3]
    assert list(progress(range(4), 4, "convert", stream=pipe)) == [0, 1, 2, 3]
    assert "convert" in tty.getvalue() and "4/4" in tty.getvalue() and "━" in tty.getvalue()
    assert pipe.getvalue() == ""


@pytest.mark.parametrize("cmd", [["inspect", "{a}", "--stats"], ["average", "{a}", "{b}", "-o", "{o}"],
                                 ["convert", "{a}", "{o}"]])
def test_long_cli_work_shows_progress_on_a_terminal(tmp_path, monkeypatch, cmd):
    paths = {"a": str(tmp_path / "a.npz"), "b": str(tmp_path / "b.npz"), "o": str(tmp_path / "o.h5")}
    for k in ("a", "b"):
        np.savez(paths[k], **{f"l{i}/w": np.ones(3, "f4") for i in range(3)})
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    assert main([c.format(**paths) for c in cmd]) == 0
    assert "3/3" in err.getvalue()


def test_fill_accepts_what_the_library_accepts():
    from growstage.cli import _fill_arg
    from growstage.engine.options import TransferOptions

    assert TransferOptions(fill=_fill_arg("0.5")).fill == 0.5
    assert TransferOptions(fill=_fill_arg("preserve")).fill == "preserve"


def test_inspect_prints_a_table_on_a_terminal_and_lines_into_a_pipe(tmp_path, capsys, monkeypatch):
    import sys

    path = str(tmp_path / "m.h5")
    x = keras.Input((3,))
    growstage.save(growstage.snapshot(keras.Model(x, keras.layers.Dense(2, name="out")(x))), path)
    assert main(["inspect", "--stats", path]) == 0
    piped = capsys.readouterr().out
    assert "│" not in piped and piped.splitlines()[0].startswith("out/kernel")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["inspect", "--stats", path]) == 0
    table = capsys.readouterr().out
    assert "│" in table and "out/kernel" in table and "non-finite" in table and "2 tensors" in table
    odd = str(tmp_path / "odd[b].npz")  # names from a file growstage did not write are no markup
    np.savez(odd, **{"enc/w[b]": np.ones(2, "f4"), "x[/]": np.zeros(1, "f4")})
    assert main(["inspect", odd]) == 0
    table = capsys.readouterr().out
    assert "enc/w[b]" in table and "x[/]" in table and "odd[b].npz" in table
