"""The package layout keeps its promises: layers import downwards only, the numpy core runs with
numpy alone, public pieces of the renovation (optimizer transfer, adapters registry, rebuild of
subclassed models) behave."""
import ast
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import growstage

ROOT = pathlib.Path(growstage.__file__).parent
ORDER = ["core", "io", "framework", "engine", "interop", "train"]  # each may import only those before it


def _imports(path: pathlib.Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("layer", ORDER)
def test_arrows_point_down(layer):
    allowed = set(ORDER[: ORDER.index(layer) + 1])
    bad = []
    for path in (ROOT / layer).rglob("*.py"):
        for mod in _imports(path, module_level_only=False):
            parts = mod.split(".")
            if parts[0] == "growstage" and len(parts) > 1 and parts[1] in ORDER and parts[1] not in allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert bad == []


def test_core_and_io_import_no_framework_at_module_level():
    bad = [f"{p.relative_to(ROOT)}: {m}" for layer in ("core", "io") for p in (ROOT / layer).rglob("*.py")
           for m in _imports(p, module_level_only=True) if m.split(".")[0] in ("tensorflow", "keras", "torch", "jax")]
    bad += [f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / "core").rglob("*.py")
            for m in _imports(p, module_level_only=False) if m.split(".")[0] in ("tensorflow", "keras", "h5py")]
    assert bad == []


def test_numpy_core_runs_with_numpy_alone(tmp_path):
    # an interpreter in which tensorflow, keras and h5py cannot be imported at all
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras', 'h5py', 'torch', 'jax'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    code = ("import numpy as np, growstage\n"
            "from growstage.core import growth, resize, rules, values, vocab, naming\n"
            "a = growstage.resize(np.arange(6.).reshape(2, 3), (2, 5), fill=0)\n"
            "s = growstage.Snapshot({'l': {'w': growstage.Param(a)}})\n"
            "print(s['l']['w'].shape, growstage.Rules(strip_prefix='m/').apply(['m/l/w']).targets)\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT.parent}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(2, 5)" in out.stdout and "'l/w': 'm/l/w'" in out.stdout


def test_modules_and_functions_stay_small():
    big, long = [], []
    for p in ROOT.rglob("*.py"):
        text = p.read_text()
        if len(text.splitlines()) > 400:
            big.append(str(p.relative_to(ROOT)))
        for n in ast.walk(ast.parse(text)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                long.append(f"{p.relative_to(ROOT)}:{n.name}")
    assert big == [] and long == []


def _model(n: int, name: str = "m") -> keras.Model:
    x = keras.Input((3,))
    h = keras.layers.Dense(n, name="hid")(x)
    m = keras.Model(x, keras.layers.Dense(2, name="out")(h), name=name)
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return m


def test_transfer_optimizer_after_a_manual_rebuild():
    keras.utils.set_random_seed(0)
    old = _model(4)
    x, y = np.random.rand(16, 3).astype("f4"), np.random.rand(16, 2).astype("f4")
    old.fit(x, y, epochs=2, verbose=0)
    new, report = growstage.rebuild(lambda: _model(6), old, mode="subset")
    counts = growstage.transfer_optimizer(old, new, report)
    assert counts == {"slots_written": 8, "slots_zero": 0}
    opt_old, opt_new = old.optimizer, new.optimizer
    assert int(opt_new.iterations.numpy()) == int(opt_old.iterations.numpy()) == 2
    for i, var in enumerate(new.trainable_variables):
        for fam in ("_momentums", "_velocities"):
            got = getattr(opt_new, fam)[i].numpy()
            want = getattr(opt_old, fam)[i].numpy()
            idx = tuple(slice(0, s) for s in want.shape)
            assert np.array_equal(got[idx], want)  # the old entries, copied
            rest = got.copy()
            rest[idx] = 0
            assert not rest.any()  # new entries start at zero
    with pytest.raises(growstage.GrowstageError, match="pass the Report"):
        growstage.transfer_optimizer(old, new, report.rows)


def test_unregister_adapter_names_an_unknown_type():
    class Nothing(keras.layers.Layer):
        pass

    with pytest.raises(KeyError, match="no adapter is registered for Nothing"):
        growstage.unregister_adapter(Nothing)


class _Sub(keras.Model):
    def __init__(self, n, **kw):
        super().__init__(**kw)
        self.hid = keras.layers.Dense(n, name="hid")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(self.hid(x))


def _sub(n):
    keras.utils.set_random_seed(7)
    m = _Sub(n, name="sub")
    m(np.zeros((1, 3), "f4"))  # a subclassed model is built by calling it
    return m


def test_rebuild_works_for_subclassed_models_built_by_calling_them():
    old = _sub(2)
    fast, report = growstage.rebuild(lambda: _sub(4), old, mode="subset")
    slow = _sub(4)
    growstage.transfer(old, slow, mode="subset")
    assert report.counts() == {"padded": 3, "copied": 1}
    for a, b in zip(fast.weights, slow.weights):
        assert np.array_equal(a.numpy(), b.numpy())
