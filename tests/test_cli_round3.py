"""The command line, round three (issue 27, items 3-5): file-only commands import no framework,
flags are never abbreviated, hints name the flags to type, and ``apply`` carries out a plan."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import growstage
from growstage.cli import main
from growstage.cli_support import cli_hint, Parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(growstage.__file__)))
FRAMEWORKS = ("tensorflow", "keras", "jax", "torch")


def _child(code, cwd, **env):
    env = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_file_only_commands_import_no_framework(tmp_path):
    for name, k in (("a", 1), ("b", 2)):
        np.savez(tmp_path / f"{name}.npz", **{"out/kernel": np.full((3, 2), k, "f4"), "out/bias": np.zeros(2, "f4")})
    growstage.save({"out": {"kernel": np.ones((3, 2), "f4")}}, tmp_path / "s.h5")
    commands = [["inspect", "a.npz", "--stats"], ["inspect", "missing.h5"], ["diff", "a.npz", "b.npz"],
                ["average", "a.npz", "b.npz", "-o", "avg.h5"], ["convert", "a.npz", "c.h5", "--rename", "out/=head/"],
                ["export", "s.h5", "s.safetensors", "--to", "torch"], ["inspect", "s.h5", "--json"]]
    code = textwrap.dedent(f"""
        import io, json, sys, contextlib
        from growstage.cli import main
        out = []
        for argv in {commands!r}:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                rc = main(argv)
            out.append([rc, sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)])
        print(json.dumps(out))
    """)
    r = _child(code, tmp_path)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert [rc for rc, _ in results] == [0, 2, 1, 0, 0, 0, 0]
    assert [mods for _, mods in results] == [[]] * len(commands)


def test_a_missing_file_is_one_line_without_log_noise(tmp_path):
    r = subprocess.run([sys.executable, "-m", "growstage.cli", "inspect", "missing.h5"], capture_output=True,
                       text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "growstage: error: missing.h5: no such file\n"


def _builders(tmp_path):
    (tmp_path / "builders.py").write_text(textwrap.dedent("""
        import keras
        def build(width):
            x = keras.Input((3,))
            h = keras.layers.Dense(width, name="hid")(x)
            return keras.Model(x, keras.layers.Dense(2, name="out")(h))
        def small():
            return build(4)
        def big():
            return build(6)
        def narrow():
            x = keras.Input((3,))
            h = keras.layers.Dense(4, name="hid")(x)
            h = keras.layers.Dense(3, name="new")(h)
            return keras.Model(x, keras.layers.Dense(2, name="out")(h))
        def deep():
            x = keras.Input((3,))
            h = keras.layers.Dense(4, name="hid")(x)
            h = keras.layers.Dense(4, name="new")(h)
            return keras.Model(x, keras.layers.Dense(2, name="out")(h))
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        import builders  # noqa: F401
        import importlib

        importlib.reload(builders)
        small = builders.small()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("builders", None)  # other tests' `--into builders:...` must import their own file
    path = growstage.save(growstage.snapshot(small), tmp_path / "small.h5")
    return small, path


def test_plan_on_a_fresh_interpreter_prints_no_framework_log_lines(tmp_path):
    _builders(tmp_path)
    r = subprocess.run([sys.executable, "-m", "growstage.cli", "plan", "small.h5", "--into", "builders.py:big",
                        "--mode", "subset"], capture_output=True, text=True, cwd=tmp_path,
                       env={k: v for k, v in dict(os.environ, PYTHONPATH=ROOT).items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "hid/kernel" in r.stdout


def test_flags_are_never_abbreviated_and_errors_show_the_subcommands_usage(capsys):
    for argv in (["plan", "x.h5", "--into", "m:f", "--mod", "subset"], ["inspect", "x.h5", "--stat"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"usage: growstage {argv[0]}" in err and "unrecognized arguments" in err and "did you mean" in err
    with pytest.raises(SystemExit):
        main(["inspct", "x.h5"])
    assert "did you mean 'inspect'?" in capsys.readouterr().err
    assert Parser().allow_abbrev is False


def test_hints_name_flags_on_the_cli_and_keywords_in_python(tmp_path, capsys, monkeypatch):
    small, path = _builders(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(path), "--into", "builders.py:big"]) == 2
    err = capsys.readouterr().err
    assert "use --mode subset to slice/pad block-wise or --mode ifpossible" in err and "mode=" not in err
    with pytest.raises(growstage.PlanError, match="use mode='subset'"):
        growstage.plan(path, _big(), mode="exact")
    assert main(["plan", str(path), "--into", "builders.py:deep"]) == 2
    err = capsys.readouterr().err
    assert "pass --ignore-missing to keep its init" in err and "=True" not in err
    assert main(["convert", str(path), "c.h5", "--rename", "hdi/=h/"]) == 2
    assert "--rename hdi/=... matched no name in the checkpoint; did you mean 'hid/'?" in capsys.readouterr().err
    p = Parser()
    p.add_argument("--ignore")
    assert cli_hint("leave it out with ignore=['enc'], pass ignore_unused=True", p) == \
        "leave it out with --ignore enc, pass ignore_unused=True"  # no such flag here: the keyword stays


def _big():
    x = keras.Input((3,))
    h = keras.layers.Dense(6, name="hid")(x)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h))


def test_apply_carries_out_the_plan_and_writes_the_model(tmp_path, capsys, monkeypatch):
    small, path = _builders(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["apply", str(path), "--into", "builders.py:big", "--mode", "subset", "--fill", "preserve"]
    assert main(argv + ["-o", "big.keras", "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["rows"]
    assert {r["target"]: r["action"] for r in rows}["hid/kernel"] == "padded"
    assert "wrote big.keras" in captured.err
    loaded = keras.saving.load_model(tmp_path / "big.keras")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("f4")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(small(x)),
                               rtol=1e-5, atol=1e-6)  # preserve: the grown model computes the same function
    def val(m, layer, attr):
        return keras.ops.convert_to_numpy(getattr(m.get_layer(layer), attr))

    assert np.array_equal(val(loaded, "hid", "kernel")[:, :4], val(small, "hid", "kernel"))
    assert np.array_equal(val(loaded, "out", "kernel")[:4], val(small, "out", "kernel"))
    assert not val(loaded, "out", "kernel")[4:].any()  # preserve: new units' outgoing weights start at zero
    # a failing plan writes nothing; a wrong suffix fails before anything is built
    assert main(["apply", str(path), "--into", "builders.py:big", "-o", "x.keras"]) == 2
    assert main(["apply", str(path), "--into", "builders.py:big", "-o", "x.h5", "--mode", "subset"]) == 2
    assert "ends in .keras" in capsys.readouterr().err
    assert set(os.listdir(tmp_path)) - {"__pycache__"} == {"big.keras", "builders.py", "small.h5"}


def test_strict_preserve_on_the_command_line(tmp_path, capsys, monkeypatch):
    _, path = _builders(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["plan", str(path), "--into", "builders.py:narrow", "--mode", "subset", "--fill", "preserve",
            "--allow-new-layers", "--ignore-missing"]
    assert main(argv) == 0
    assert "new: new layer: NOT function-preserving" in capsys.readouterr().out
    assert main(argv + ["--strict-preserve"]) == 2
    assert "new: fill 'preserve' cannot preserve the function (--strict-preserve)" in capsys.readouterr().err


def test_python_m_growstage_a_closed_pipe_and_long_metadata(tmp_path):
    """`python -m growstage` is the command; `inspect | head` ends quietly; an RNG state is summarised."""
    state = list(range(600))  # as long as a fit checkpoint's RNG state
    growstage.save({f"l{i}": {"kernel": np.ones((2, 2), "f4")} for i in range(3000)}, tmp_path / "s.h5",
                   meta={"rng": state, "epoch": 3})
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "growstage", "inspect", "s.h5"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = [line for line in r.stdout.splitlines() if line.startswith("meta ")]
    assert len(meta) == 1 and '"epoch": 3' in meta[0] and "see --json" in meta[0] and "599" not in meta[0]
    r = subprocess.run([sys.executable, "-m", "growstage", "inspect", "s.h5", "--json"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=300)
    assert json.loads(r.stdout)["meta"]["rng"] == state
    shell = f"{sys.executable} -m growstage inspect s.h5 | head -n 1"
    r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.stdout.count("\n") == 1 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
