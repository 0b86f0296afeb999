"""Issue 29: RETURNN's Pretrain and its engine's transfer, item by item, against recorded RETURNN output.

``fixtures/pretrain_returnn.json`` (``fixtures/make_pretrain_fixtures.py``, run with returnn installed)
holds what RETURNN did; nothing here needs RETURNN.  ``transitions``: at each pretrain transition of
``fixtures/pretrain_cases.TRANSITIONS``, RETURNN's TF engine (``Engine.init_new_network``) moved a
network whose params were marked with distinct integers into the next one; each new entry says
which old entry it holds (or -1: its init).  Here growstage builds the same stages with
``growstage.returnn.builder``, marks the old Keras model the same way, transfers with the stage's
options as ``fit`` does, and must put the same old entries in the same places and keep the init
everywhere else (items 1-3: ``copy_output_layer`` as a mode, a layer's own ``custom_param_importer``,
a layer with a loss and ``is_output_layer: False``).
"""
import copy
import importlib.util
import json
import os

import numpy as np
import pytest

import growstage
import growstage.returnn as gr
from growstage import GrowstageError, Schedule, layerwise, returnn_pretrain
from growstage.train.epoch_values import resolve_epoch_values, wrapped_at

HERE = os.path.dirname(__file__)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "fixtures", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cases, replay = _load("pretrain_cases"), _load("engine_replay")  # engine_replay imports returnn only when run
with open(os.path.join(HERE, "fixtures", "pretrain_returnn.json")) as f:
    RETURNN = json.load(f)
UNRESOLVED = "<WrapEpochValue>"
KERAS_NAMES = {"W": "kernel", "b": "bias"}


def plain(value):
    return json.loads(json.dumps(value, default=lambda v: UNRESOLVED))


def per_epoch(stages: list[dict], n: int) -> list[dict]:
    """The stage of each of the first ``n`` epochs (the last stage continues)."""
    out = [s for s in stages for _ in range(s["repetitions"])]
    return (out + out[-1:] * n)[:n]


def test_every_new_case_was_recorded():
    assert set(RETURNN["refused"]) == set(cases.REFUSED) and set(RETURNN["accepted"]) == set(cases.ACCEPTED)
    assert set(RETURNN["transitions"]) == set(cases.TRANSITIONS) and all(RETURNN["transitions"].values())


@pytest.mark.parametrize("name", sorted(cases.TRANSITIONS))
def test_transitions_copy_what_returnns_engine_copies(name):
    net, kw = copy.deepcopy(cases.CASES[name])
    build = gr.builder(cases.EXTERN_DATA)
    sched = Schedule(build, stages=returnn_pretrain(net, **kw))
    for rec in RETURNN["transitions"][name]:
        old_stage, stage = sched.stage_for_epoch(rec["epoch"] - 2), sched.stage_for_epoch(rec["epoch"] - 1)
        old = build(old_stage)
        marks = replay.mark(growstage.snapshot(old).values_dict())
        growstage.transfer(marks, old, mode="exact")
        new = build(stage)
        init = growstage.snapshot(new).values_dict()
        report = growstage.transfer(old, new, stage.transfer_options(allow_new_layers=True))
        got = growstage.snapshot(new).values_dict()
        seen = set()
        for key, want in rec["params"].items():
            layer, param = key.split("/")
            g, before = got[layer][KERAS_NAMES[param]], marks.get(layer, {}).get(KERAS_NAMES[param])
            src = replay.sources(g, before)
            assert " ".join(map(str, src)) == want["source"], (key, stage.index)
            kept = np.array(src) == -1
            assert np.array_equal(g.ravel()[kept], init[layer][KERAS_NAMES[param]].ravel()[kept]), key
            seen.add(f"{layer}/{KERAS_NAMES[param]}")
        assert seen == {f"{layer}/{p}" for layer in got for p in got[layer]}  # every param compared
        # RETURNN's engine drops the layers the new network lacks: the stage ignores them, the report lists them
        unused = {r.source.split("/")[0] for r in report.rows if r.action == "unused"}
        assert unused == set(marks) - set(got) and (not unused or stage.options["ignore_unused"])
        modes = {r.layer: r.mode for r in report.rows if r.layer in rec["modes"] and r.action != "unused"}
        assert modes == {k: "reset" if m == "dropped" else m for k, m in rec["modes"].items()}


def test_copy_output_layer_is_tested_for_falsiness_only():
    net = cases.widening()
    for col, mode in [("subset", None), (True, None), (0, "reset"), (False, "reset"), ("reset", "reset")]:
        stages = returnn_pretrain(net, copy_output_layer=col)
        assert [s.get("modes", {}).get("output") for s in stages] == [mode, mode], col
    assert "modes" not in returnn_pretrain(net, copy_param_mode="reset", copy_output_layer="subset")[1]
    assert returnn_pretrain(net, copy_param_mode="reset")[1]["modes"] == {"output": "reset"}


def test_own_custom_param_importer_and_is_output_layer():
    net, kw = cases.CASES["t_own_importer_reset"]
    stage = returnn_pretrain(net, **kw)[1]
    assert stage["mode"] == "reset" and stage["modes"] == {"h1": "subset", "output": "reset"}
    note = "stage 1: layer 'output' gets mode 'reset' over its own custom_param_importer 'subset'"
    assert Schedule(gr.builder(cases.EXTERN_DATA), stages=returnn_pretrain(net, **kw)).stage(1).notes == [note]
    stages = returnn_pretrain(cases.with_aux_outputs(), copy_output_layer=False)
    assert stages[1]["modes"] == {"output": "reset", "probe": "reset"}  # 'aux' has a loss, is_output_layer False
    bad = cases.widening(h1={"custom_param_importer": "subst"})
    with pytest.raises(GrowstageError, match="layer 'h1': custom_param_importer is 'subst'; did you mean 'subset'"):
        returnn_pretrain(bad)
    with pytest.raises(GrowstageError, match="RETURNN calls it as f"):
        returnn_pretrain(cases.widening(h1={"custom_param_importer": lambda **kw: None}))
    # growstage's own path: a network dict's layer importer is that layer's mode in any Schedule
    own = Schedule(gr.builder(cases.EXTERN_DATA), stages=layerwise(net), mode="exact")
    assert own.stage(0).transfer_options().modes == {"h1": "subset", "output": "subset"}


@pytest.mark.parametrize("name", ["wrapped_values", "wrapped_custom"])
def test_wrap_epoch_value_resolved_per_epoch(name):
    net, kw = copy.deepcopy(cases.CASES[name])
    rec = RETURNN["cases"][name]
    stages = returnn_pretrain(net, **kw)
    n = rec["num_epochs"] + 2
    for epoch, (stage, want) in enumerate(zip(per_epoch(stages, n), rec["epoch_nets"])):
        assert plain(stage["spec"]) == {k: v for k, v in want.items() if not k.startswith("#")}, epoch
        assert stage["mode"] == (want.get("#copy_param_mode", rec["copy_param_mode"]) or "ifpossible"), epoch
        lrs = RETURNN["learning_rates"].get(name)  # the engine's, '#config' rates carried on; None: BASE_LR
        assert stage.get("learning_rate", cases.BASE_LR) == (lrs[epoch] if lrs else cases.BASE_LR), epoch
    if name == "wrapped_values":  # a value RETURNN leaves unresolved: a Schedule refuses it, naming it
        with pytest.raises(GrowstageError, match=r"layer 'h1' option 'not_searched'\[0\]\['deep'\] is a WrapEpochValue"):
            Schedule(lambda s: None, stages=stages).stage(0)
    else:
        sched = Schedule(lambda s: None, stages=stages)
        assert [sched.stage_for_epoch(e).learning_rate for e in range(6)] == RETURNN["learning_rates"][name][:6] == [
            0.5, 0.25, 1 / 6, 0.125, 0.125, 0.125]  # the last rate carries on into the full network, as in RETURNN


def test_wrap_epoch_value_class_and_refusals():
    w = gr.WrapEpochValue(lambda epoch: epoch * 2)
    assert resolve_epoch_values({"h": {"n_out": w, "x": (w, 1)}}, 3) == {"h": {"n_out": 6, "x": (6, 1)}}
    assert wrapped_at({"#config": {"learning_rate": w}}) == "network option '#config'['learning_rate']"
    with pytest.raises(GrowstageError, match="'#repetition' is"):
        returnn_pretrain({**cases.widening(), "#repetition": w}, construction_algo="no_network_modifications")
    with pytest.raises(GrowstageError, match="only returnn_pretrain"):
        Schedule(lambda s: None, stages=[{"h": {"dropout": w}}]).stage(0)
    returnn = pytest.importorskip("returnn.pretrain")  # RETURNN's own class, where installed
    net = cases.widening(h2={"dropout": returnn.WrapEpochValue(cases.dropout_by_epoch)})
    assert [s["spec"]["h2"]["dropout"] for s in returnn_pretrain(net, repetitions=2) if "h2" in s["spec"]] == [0.3, 0.4]


def test_schedule_repetitions_zero_and_empty_as_returnn():
    for name, reps in [("reps_zero_means_one", 0), ("reps_empty_list", []), ("reps_empty_dict", {})]:
        rec = RETURNN["cases"][name]
        nets = layerwise(cases.CASES[name][0], compat="returnn")
        sched = Schedule(lambda s: None, stages=nets, repetitions=reps)
        assert [sched.stage_for_epoch(e).index for e in range(rec["num_epochs"] + 2)] == rec["epoch_stage"], name
    for reps in (True, False):
        with pytest.raises(GrowstageError, match="RETURNN would train every stage 1 epoch"):
            Schedule(lambda s: None, stages=[1, 2], repetitions=reps).stage(0)


REFUSED_MESSAGES = {  # what growstage says, and what RETURNN did (recorded) that the message describes
    "reps_true": ("repetitions is True: RETURNN would train every stage 1 epoch", lambda r: r["num_epochs"] == 3),
    "reps_false": ("repetitions is False: RETURNN would train every stage 1 epoch", lambda r: r["repetitions"] == [1] * 3),
    "reps_dict_two_keys_one_stage": ("keys -1 and 2 both set stage 2 (RETURNN takes the one last in sorted order",
                                     lambda r: r["repetitions"][2] == 3),
    "output_layers_string_from_input": ("output_layers='output' is a string: RETURNN iterates its characters",
                                        lambda r: r["num_epochs"] == 3),
    "input_layers_string": ("input_layers='data' is a string", lambda r: r["num_epochs"] == 3),
    "copy_output_layer_empty_string": ("RETURNN, testing it for falsiness, would reset the output layers",
                                       lambda r: r["copy_output_layer"] == ""),
    # the fresh trial (u29): RETURNN's stage carries what growstage cannot do; the message says what RETURNN does
    "importer_function": ("layer 'h1': custom_param_importer is a function; RETURNN calls it as f(layer=",
                          lambda r: r["stages"][0]["h1"]["custom_param_importer"] == "<function own_importer_function>"),
    "config_batch_size": ("'#config' sets 'batch_size': RETURNN would set that config key for this stage's epochs",
                          lambda r: r["stages"][0]["#config"] == {"batch_size": 5000} and r["num_epochs"] == 2),
    "trainable_false": ("'#trainable' is False: RETURNN would run this stage's epochs without updating any param",
                        lambda r: r["stages"][0]["#trainable"] is False and "#trainable" not in r["stages"][1]),
    "unread_hash_key": ("unknown network option '#info'; did you mean '#config'? RETURNN ignores a '#' key its engine "
                        "does not read", lambda r: r["stages"][0]["#info"] == {"layers": 1}),
    "output_layers_typo_from_input": ("output layer 'outptu' is not in the network; did you mean 'output'? (RETURNN's "
                                      "from_input ignores it)", lambda r: r["num_epochs"] == 3),
    "output_layers_typo_custom": ("output layer 'outptu' is not in the network; did you mean 'output'? (RETURNN's "
                                  "construction function ignores it)", lambda r: r["num_epochs"] == 2),
    "reps_negative": ("repetitions[1] is -1; expected an int >= 0 (the epochs of that stage) (RETURNN reads a negative "
                      "count as 0 epochs)", lambda r: r["num_epochs"] == 3 and r["epoch_stage"][:3] == [0, 2, 2]),
    "reps_final_zero": ("repetitions give the final network 0 epochs: RETURNN would then train an earlier stage's "
                        "network for good", lambda r: r["epoch_stage"] == [0, 1, 1, 1]),
}


@pytest.mark.parametrize("name", sorted(cases.REFUSED))
def test_refused_where_returnn_runs_saying_what_returnn_did(name):
    net, kw = copy.deepcopy(cases.REFUSED[name])
    message, returnn_did = REFUSED_MESSAGES[name]
    assert returnn_did(RETURNN["refused"][name])
    with pytest.raises(GrowstageError) as e:
        returnn_pretrain(net, **kw)
    assert message in str(e.value)


def test_accepted_where_returnn_fails():
    for name, (net, kw) in cases.ACCEPTED.items():
        assert RETURNN["accepted"][name]  # RETURNN's exception
        stages = returnn_pretrain(copy.deepcopy(net), **kw)
        full = layerwise(net, method=kw.get("construction_algo", "from_output"), compat="returnn")[-1]
        assert stages[-1]["spec"] == {k: v for k, v in full.items() if not k.startswith("#")}
    for algo in ("from_output", "from_input"):  # the original network's '#' keys are the full network's options
        stages = returnn_pretrain(cases.with_hash_keys(), construction_algo=algo)
        assert [(s["mode"], s["repetitions"], s.get("learning_rate")) for s in stages[-1:]] == [("ifpossible", 3, 0.5)]
        assert all(s.get("learning_rate") is None and s["repetitions"] == 1 for s in stages[:-1])
    assert [s["repetitions"] for s in returnn_pretrain(cases.blstm(3), repetitions=(1, 2))] == [1, 2, 2]
    assert [s["repetitions"] for s in returnn_pretrain(cases.blstm(3), repetitions={1: 3, "final": 2})] == [1, 3, 2]


def test_readme_network_is_one_returnn_builds():
    built = RETURNN["built"]["readme_stack"]
    stages = returnn_pretrain(cases.README_NET, repetitions=[1, 2])
    got = [sorted(s["spec"]) for s in per_epoch(stages, len(built))]
    assert got == [sorted({k.split("/")[0] for k in b}) for b in built]
    model = gr.build_model(stages[-1]["spec"], {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}})
    names = sorted(k.replace("/rec/", "/") for k in gr.to_returnn(model, net_dict=stages[-1]["spec"]))
    assert names == sorted(built[-1])  # the same params, in RETURNN's names


def test_trial_findings_hash_keys_and_schedule_repetitions():
    """The fresh trial (u29): '#trainable': True is RETURNN's default; a '#' key RETURNN's engine reads only with
    Horovod is named; a Schedule's repetitions that every stage overrides is an error, one some override a note."""
    rec = RETURNN["cases"]["custom_trainable_true"]
    net, kw = cases.CASES["custom_trainable_true"]
    assert rec["stages"][0]["#trainable"] is True and [s["spec"] for s in returnn_pretrain(net, **kw)] == [
        plain({k: v for k, v in st.items() if not k.startswith("#")}) for st in rec["stages"]]
    with pytest.raises(GrowstageError, match="'#finish_all_data': RETURNN reads it only with Horovod"):
        returnn_pretrain(net, construction_algo=cases.with_hash("#finish_all_data", True))
    with pytest.raises(GrowstageError, match="'#trainable' is 1; RETURNN tests it for truth"):
        returnn_pretrain(net, construction_algo=cases.with_hash("#trainable", 1))
    dropping = returnn_pretrain(*cases.CASES["t_stage_drops_layers"][:1], **cases.CASES["t_stage_drops_layers"][1])
    assert [s.get("ignore_unused") for s in dropping] == [None, True]  # h3 and aux: RETURNN drops them
    stages = returnn_pretrain(net, repetitions=2)
    with pytest.raises(GrowstageError, match=r"repetitions=3 is given but every stage carries its own"):
        Schedule(lambda s: None, stages=stages, repetitions=3)
    sched = Schedule(lambda s: None, stages=[stages[0], stages[1]["spec"]], repetitions=[3, 1])
    assert sched.stage(0).notes == ["stage 0: its own repetitions 2 override the schedule's repetitions=[3, 1]"]
    assert [sched.stage_for_epoch(e).index for e in range(4)] == [0, 0, 1, 1] and sched.stage(1).notes == []
