"""README.md runs as written (issue 12): every ```python block, top to bottom, in one namespace in a
fresh temporary directory, then every shell command of the "Command line" section there too."""
import re
import shlex
import sys
from pathlib import Path

import pytest

from growstage.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(text, lang):
    """``(heading, code)`` of every fenced block of ``lang``, in order."""
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) == lang:
            heads = re.findall(r"^## (.+)$", text[: m.start()], re.M)
            out.append((heads[-1] if heads else "", m.group(2)))
    return out


def shell_commands(code):
    """One command per line; comments dropped; a trailing ``# exit N`` says the expected status."""
    for line in code.splitlines():
        cmd, _, comment = line.partition("  #")
        if cmd.strip() and not cmd.lstrip().startswith("#"):
            want = re.search(r"exit (\d+)", comment)
            yield cmd.strip(), int(want.group(1)) if want else 0


def _forget_modules_under(folder):
    for name, mod in list(sys.modules.items()):
        if str(getattr(mod, "__file__", "") or "").startswith(str(folder)):
            del sys.modules[name]


@pytest.fixture()
def forget_modules(tmp_path_factory):
    """Modules written into pytest's temporary folders (the README's builders.py, other tests' ones of
    the same name) must not leak between tests: a fresh directory gets fresh imports.  Only pytest's
    own base folder: a checkout or a virtual environment may live in the system's temp folder too."""
    base = tmp_path_factory.getbasetemp()
    _forget_modules_under(base)
    yield
    _forget_modules_under(base)


def test_readme_blocks_and_cli_commands_run(tmp_path, monkeypatch, forget_modules):
    text = README.read_text()
    py = blocks(text, "python")
    assert len(py) >= 4
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # modules a block writes (builders.py) import
    namespace = {"__name__": "__readme__"}
    for i, (head, code) in enumerate(py):
        if head in OWN_PROCESS:
            continue
        try:
            exec(compile(code, f"README.md python block {i} ({head})", "exec"), namespace)
        except Exception as e:
            pytest.fail(f"README python block {i} under '## {head}' failed: {type(e).__name__}: {e}\n{code}")
    cli = [code for head, code in blocks(text, "bash") if head == "Command line"]
    assert cli, "README has a '## Command line' section with a bash block"
    ran = 0
    for code in cli:
        for cmd, want in shell_commands(code):
            argv = shlex.split(cmd)
            assert argv[0] == "growstage", cmd
            # in-process: the same parser and code as the console script, without a TensorFlow start each
            assert main(argv[1:]) == want, cmd
            ran += 1
    assert ran >= 5


# sections whose blocks set up JAX themselves (XLA_FLAGS is read once, at import): each runs as a script
OWN_PROCESS = ("Sharded models",)


@pytest.mark.parametrize("head", OWN_PROCESS)
def test_readme_blocks_that_need_their_own_process(head, tmp_path):
    import os
    import subprocess

    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("runs in the JAX pass (the block sets KERAS_BACKEND=jax and forces 8 host devices itself)")
    code = "\n".join(c for h, c in blocks(README.read_text(), "python") if h == head)
    assert code, f"README has python blocks under '## {head}'"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "KERAS_BACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"README python blocks under '## {head}' failed:\n{r.stderr[-3000:]}"
    assert r.stdout.splitlines()[-1] == "True", r.stdout


def test_the_extractor_sees_blocks_and_expected_exit_codes():
    text = "## A\n```python\nx = 1\n```\n## Command line\n```bash\ngrowstage diff a b   # exit 1\n# c\n```\n"
    assert blocks(text, "python") == [("A", "x = 1\n")]
    assert list(shell_commands(blocks(text, "bash")[0][1])) == [("growstage diff a b", 1)]


def test_readme_keras_hub_section_passes_stack_rename_as_rename():
    """A user finds how to hand stack_rename's map over (as rename=, not as the source) in the section."""
    code = "\n".join(c for head, c in blocks(README.read_text(), "python") if head == "keras_hub models")
    assert "= growstage.stack_rename(" in code and "rename=rename)" in code, code
