"""All-or-nothing writes: a failing importer or assignment leaves every target value as it was."""
import keras
import numpy as np
import pytest

import growstage
from conftest import L, build_blstm, values


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_custom_importer_raising_on_third_layer_leaves_everything_unchanged():
    old, new = build_blstm(4, depth=3, seed=1), build_blstm(6, depth=3, seed=2)
    before = values(new)
    calls = []

    def boom(layer, vals, *, context):
        calls.append(layer.name)
        context.assign("forward_layer/cell/bias", context.resize("forward_layer/cell/bias"))
        raise RuntimeError("importer failed")

    with pytest.raises(growstage.TransferError, match="blstm3.*importer failed.*restored"):
        growstage.transfer(old, new, mode="subset", custom_param_importer={"blstm3": boom})
    assert calls == ["blstm3"]
    assert _same(values(new), before)


def test_custom_importer_and_mode_string():
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)

    def importer(layer, vals, *, context):
        for name in context.params:
            context.assign(name, context.resize(name))

    rep = growstage.transfer(old, new, mode="subset", custom_param_importer={"blstm1": importer, "out": "reset"})
    assert rep.row("blstm1/forward_layer/cell/kernel").action == "custom"
    assert rep.row("out/kernel").action == "kept-init"
    k_new = growstage.snapshot(new)["blstm1"]["forward_layer/cell/kernel"].read()
    k_old = growstage.snapshot(old)["blstm1"]["forward_layer/cell/kernel"].read()
    assert np.array_equal(k_new[:, 6:10], k_old[:, 4:8])  # forget gate block


def test_failing_assignment_restores_earlier_writes(monkeypatch):
    old, new = build_blstm(4, seed=1), build_blstm(4, seed=2)
    before = values(new)
    target = new.get_layer("out").kernel
    orig = type(target).assign

    failed = []

    def assign(self, value, *a, **k):
        if self is target and not failed:  # fails once, like a transient device error
            failed.append(True)
            raise OSError("device lost")
        return orig(self, value, *a, **k)

    monkeypatch.setattr(type(target), "assign", assign)
    with pytest.raises(growstage.TransferError, match="out.*device lost"):
        growstage.transfer(old, new)
    monkeypatch.undo()
    assert _same(values(new), before)


def test_set_and_get_param_values_by_dict_single_layer():
    d = L.Dense(3, name="d")
    d.build((None, 2))
    vals = growstage.get_param_values_dict(d)
    assert set(vals) == {"kernel", "bias"}
    with pytest.raises(growstage.PlanError, match="gets no value.*'d/bias'"):
        growstage.set_param_values_by_dict(d, {"kernel": vals["kernel"]})
    rep = growstage.set_param_values_by_dict(d, {"kernel": np.ones((4, 3), "f4")}, mode="subset", ignore_missing=True)
    assert rep.row("d/kernel").action == "sliced"
    assert np.all(d.kernel.numpy() == 1)
