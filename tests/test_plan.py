"""Planning: strict by default, explicit relaxations, typed options, a dry run that changes nothing."""
import keras
import numpy as np
import pytest

import growstage
from conftest import L, build_blstm, values


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
    with pytest.raises(growstage.PlanError, match=r"source layer 'blstm3' \(6 params\) has no layer in the target"):
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


def test_plan_is_a_dry_run():
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    before = growstage.snapshot(new).values_dict()
    p = growstage.plan(old, new, mode="subset")
    assert "padded" in str(p)
    after = growstage.snapshot(new).values_dict()
    assert all((before[l][k] == after[l][k]).all() for l in before for k in before[l])
    growstage.apply(p)
    k = growstage.snapshot(new).values_dict()["out"]["kernel"]
    assert not np.array_equal(k, before["out"]["kernel"])
    assert np.array_equal(k[:4, :], growstage.snapshot(old)["out"]["kernel"].read()[:4, :])


@pytest.mark.parametrize("kwargs, message", [
    ({"fill": object()}, "fill must be a fill name, a number or a callable"),
    ({"fill": float("nan")}, "fill is nan: a fill must be finite"),
    ({"fill_noise": float("nan")}, "fill_noise must be a finite number"),
    ({"allow_cast": "out"}, "allow_cast must be True or False"),
    ({"ignore": [3]}, "ignore: every entry is a name"),
    ({"modes": ["blstm1"]}, "modes must be a dict"),
    ({"fills": {"out": "zero"}}, "unknown fill 'zero' for fills\\['out'\\]; did you mean 'zeros'"),
    ({"rename": {"out": 3}}, "rename\\['out'\\] must be a layer name"),
    ({"fill_seed": 1.5}, "fill_seed must be an int"),
    ({"on_values": "edit"}, "on_values must be a callable"),
])
def test_options_are_type_checked_at_the_entry_point(kwargs, message):
    old, new = build_blstm(4, seed=1), build_blstm(4, seed=2)
    before = values(new)
    for call in (growstage.plan, growstage.transfer):
        with pytest.raises(growstage.GrowstageError, match=message):
            call(old, new, **kwargs)
    with pytest.raises(growstage.GrowstageError, match=message):
        growstage.rebuild(lambda: build_blstm(4, seed=3), old, **kwargs)
    assert all(np.array_equal(before[k], v) for k, v in values(new).items())


def test_transfer_options_object_and_keywords_agree():
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    opts = growstage.TransferOptions(mode="subset", fill="zeros")
    a = growstage.plan(old, new, opts)
    b = growstage.plan(old, new, mode="subset", fill="zeros")
    assert [r.to_dict() for r in a.rows] == [r.to_dict() for r in b.rows]
    c = growstage.plan(old, new, opts, fill="init")  # keywords override the object
    assert {r.fill for r in c.rows if r.action == "padded"} == {"init"}
    assert growstage.TransferOptions().mode == "exact"


def test_vocabulary_enums_are_strings():
    from growstage.core.vocab import Action, Fill, Mode
    old, new = build_blstm(4, seed=1), build_blstm(6, seed=2)
    p = growstage.plan(old, new, mode=Mode.SUBSET, fill=Fill.ZEROS)
    assert {r.action for r in p.rows} == {Action.PADDED, Action.COPIED}
    assert all(type(r.action) is str for r in p.rows)  # plain strings in rows and JSON


def test_a_layer_passed_as_the_model_is_named():
    old = build_blstm(4, seed=1)
    with pytest.raises(growstage.GrowstageError, match="'out' is a layer, not a model"):
        growstage.transfer(old, old.get_layer("out"))


def test_stage_options_are_checked_when_the_stage_is_made():
    # listed stages are made (and checked) with the Schedule (issue 27, item 7)
    with pytest.raises(growstage.GrowstageError, match="stage 0: unknown fill 'zero'.*did you mean 'zeros'"):
        growstage.Schedule(lambda stage: None, stages=[{"spec": 1, "fill": "zero"}])
    with pytest.raises(growstage.GrowstageError, match="stage 0: unknown key 'ignore_mising'; did you mean 'ignore_missing'"):
        growstage.Schedule(lambda stage: None, stages=[{"spec": 1, "ignore_mising": True}])
    sched = growstage.Schedule(lambda stage: None, stage_fn=lambda i, prev: {"spec": 1, "fill": "zero"} if i < 2 else None)
    with pytest.raises(growstage.GrowstageError, match="stage 0: unknown fill 'zero'.*did you mean 'zeros'"):
        sched.stage(0)  # a stage_fn's stages are made one at a time, each checked when made


def test_options_that_act_on_nothing_are_noted():
    def dense(n):
        x = keras.Input((3,))
        h = keras.layers.Dense(n, name="h")(x)
        return keras.Model(x, keras.layers.Dense(2, name="out")(h))

    small, big = dense(4), dense(8)
    quiet = growstage.plan(small, big, mode="subset", fill="clone", fill_noise=0.01)
    assert not any("had no effect" in n for n in quiet.notes)  # clone pads h and out: the noise acts
    noted = growstage.plan(small, big, mode="subset", fill="preserve", fill_noise=0.01)
    assert any(n.startswith("fill_noise=0.01 had no effect") for n in noted.notes), noted.notes
    kept = growstage.plan(small, big, mode="ifpossible", fill="clone")
    (note,) = [n for n in kept.notes if "had no effect" in n]
    assert "fill 'clone' had no effect on h, out: mode 'ifpossible' keeps the new init" in note
    assert not any("had no effect" in n for n in growstage.plan(small, big, mode="ifpossible").notes)
