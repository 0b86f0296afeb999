"""Strict by default, explicit relaxations, and all-or-nothing writes."""
import keras
import numpy as np
import pytest

import growstage
from conftest import L, build_blstm, values


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_typo_in_layer_name_option_suggests_closest():
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    with pytest.raises(growstage.PlanError) as e:
        growstage.plan(old, new, mode="subset", modes={"blstm_2": "reset"})
    assert "unknown target layer 'blstm_2'" in str(e.value) and "did you mean 'blstm2'" in str(e.value)


def test_typo_in_ignore_list_suggests_closest():
    old, new = build_blstm(4, seed=1), build_blstm(4, seed=2)
    with pytest.raises(growstage.PlanError, match="unknown source layer or param 'blstm_3'.*did you mean 'blstm"):
        growstage.plan(old, new, ignore=["blstm_3"])


def test_unused_source_param_is_an_error_until_allowed():
    old, new = build_blstm(4, depth=3, seed=1), build_blstm(4, depth=2, seed=2)
    with pytest.raises(growstage.PlanError, match="source param blstm3/forward_layer/cell/kernel has no home"):
        growstage.plan(old, new)
    p = growstage.plan(old, new, ignore=["blstm3"])
    assert sum(r.action == "ignored" for r in p.rows) == 6
    p = growstage.plan(old, new, ignore_unused=True)
    assert sum(r.action == "unused" for r in p.rows) == 6
    assert "blstm3/forward_layer/cell/kernel" in p.table()


def test_exact_mode_refuses_shape_change_and_names_param():
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    with pytest.raises(growstage.PlanError) as e:
        growstage.plan(old, new)
    msg = str(e.value)
    assert "blstm1/forward_layer/cell/kernel: shape (5, 16) -> (5, 24) under mode 'exact'" in msg
    assert "mode='subset'" in msg


def test_unknown_mode_fill_and_option_suggest():
    old = build_blstm(4, seed=1)
    with pytest.raises(growstage.GrowstageError, match="unknown option 'ignore_mising'; did you mean 'ignore_missing'"):
        growstage.transfer(old, old, ignore_mising=True)
    with pytest.raises(growstage.GrowstageError, match="did you mean 'subset'"):
        growstage.plan(old, old, mode="subst")
    with pytest.raises(growstage.GrowstageError, match="did you mean 'zeros'"):
        growstage.plan(old, old, fill="zero")


def test_ifpossible_keeps_init_and_reports_it():
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    init = values(new)
    rep = growstage.transfer(old, new, mode="ifpossible")
    row = rep.row("blstm1/forward_layer/cell/kernel")
    assert row.action == "kept-init" and "ifpossible" in row.reason
    assert rep.row("out/bias").action == "copied"
    after = values(new)
    for key, v in init.items():
        if key[0] in ("blstm1", "blstm2"):
            assert np.array_equal(after[key], v), key


def test_reset_mode_per_layer_and_rename():
    old, new = build_blstm(4, seed=1), build_blstm(4, seed=2)
    snap_new = growstage.snapshot(new)
    rep = growstage.transfer(old, new, modes={"blstm1": "reset"})
    assert rep.counts() == {"copied": 8, "kept-init": 6}
    got = growstage.snapshot(new)
    assert np.array_equal(got["blstm1"]["forward_layer/cell/kernel"].read(), snap_new["blstm1"]["forward_layer/cell/kernel"].read())
    # rename: a source layer feeds a differently named target layer
    src = {("enc" if k == "blstm2" else k): v for k, v in growstage.snapshot(old).values_dict().items()}
    rep = growstage.transfer(src, new, rename={"enc": "blstm2"})
    assert rep.row("blstm2/backward_layer/cell/bias").source == "enc/backward_layer/cell/bias"
    with pytest.raises(growstage.PlanError, match="rename: unknown target layer 'blstm_2'"):
        growstage.plan(src, new, rename={"enc": "blstm_2"})


def test_auto_generated_names_are_refused_with_a_hint():
    x = keras.Input((3,))
    m = keras.Model(x, L.Dense(2)(L.Dense(4, name="hidden")(x)))
    with pytest.raises(growstage.AutoNameError, match="auto-generated name.*allow_auto_names=True"):
        growstage.snapshot(m)
    snap = growstage.snapshot(m, allow_auto_names=True)
    assert "hidden" in snap and len(snap) == 2


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


def test_on_values_hook_edits_source_first():
    old, new = build_blstm(4, seed=1), build_blstm(4, seed=2)

    def hook(vd):
        vd["out"]["bias"] = np.full_like(vd["out"]["bias"], 3.0)

    growstage.transfer(old, new, on_values=hook)
    assert np.all(new.get_layer("out").bias.numpy() == 3.0)


def test_dtype_mismatch_needs_allow_cast():
    old = build_blstm(4, seed=1)
    vd = growstage.snapshot(old).values_dict()
    vd["out"]["bias"] = vd["out"]["bias"].astype("f8")
    with pytest.raises(growstage.PlanError, match="out/bias: source dtype float64.*allow_cast=True"):
        growstage.plan(vd, old)
    growstage.transfer(vd, old, allow_cast=True)


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
