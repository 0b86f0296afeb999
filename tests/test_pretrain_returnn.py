"""Issue 18 item 0: stage construction equals RETURNN's ``Pretrain`` (recorded fixtures; no returnn needed).

``fixtures/pretrain_returnn.json`` is what RETURNN's real ``Pretrain`` built for each case of
``fixtures/pretrain_cases.py`` (``fixtures/make_pretrain_fixtures.py`` writes it); here
growstage builds the same cases and must give the same networks, wiring, epoch map and options.
"""
import copy
import importlib.util
import json
import os

import keras
import numpy as np
import pytest

import growstage
from growstage import GrowstageError, Schedule, fit, layerwise, returnn_pretrain
from growstage.train.pretrain import pretrain_repetitions, split_net_options

HERE = os.path.dirname(__file__)
_spec = importlib.util.spec_from_file_location("pretrain_cases", os.path.join(HERE, "fixtures", "pretrain_cases.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)
with open(os.path.join(HERE, "fixtures", "pretrain_returnn.json")) as f:
    RETURNN = json.load(f)


def plain(net: dict) -> dict:
    """Layers only, as JSON would hold them (tuples become lists)."""
    return json.loads(json.dumps({k: v for k, v in net.items() if not k.startswith("#")},
                                 default=lambda v: "<WrapEpochValue>"))  # as the generator records one


def test_every_case_was_recorded():
    assert set(RETURNN["cases"]) == set(cases.CASES) and set(RETURNN["errors"]) == set(cases.ERROR_CASES)
    with_config = {name for name, rec in RETURNN["cases"].items() if '"#config"' in json.dumps(rec)}
    assert set(RETURNN["learning_rates"]) == with_config and "custom_lr_from_second" in with_config


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_stage_networks_equal_returnn(name):
    net, kw = copy.deepcopy(cases.CASES[name])
    got = layerwise(net, method=kw.get("construction_algo", "from_output"), compat="returnn",
                    output=kw.get("output_layers", ["output"]), input=kw.get("input_layers", ["data"]))
    want = RETURNN["cases"][name]["stages"]
    assert [plain(s) for s in got] == [plain(s) for s in want]  # lists compared in order: wiring included


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_epoch_map_and_stage_options_equal_returnn(name):
    net, kw = copy.deepcopy(cases.CASES[name])
    rec = RETURNN["cases"][name]
    if "<WrapEpochValue>" in json.dumps(rec.get("epoch_nets")):
        return  # a value RETURNN leaves unresolved, which a Schedule refuses: test_pretrain_returnn_engine.py
    sched = Schedule(lambda stage: None, stages=returnn_pretrain(net, **kw))
    for epoch in range(rec["num_epochs"] + 2):  # RETURNN's epochs count from 1, growstage's from 0
        want = rec["epoch_nets"][epoch] if "epoch_nets" in rec else rec["stages"][rec["epoch_stage"][epoch]]
        stage = sched.stage_for_epoch(epoch)
        assert stage.spec == plain(want) or plain(stage.spec) == plain(want), (epoch, stage.index)
        # RETURNN: net_desc.get("#copy_param_mode", pretrain.copy_param_mode); None copies equal shapes
        assert stage.mode == (want.get("#copy_param_mode", rec["copy_param_mode"]) or "ifpossible")
        # RETURNN's engine: the '#config' rate, carried on by its learning-rate control (recorded); None is its base
        lr = RETURNN["learning_rates"][name][epoch] if name in RETURNN["learning_rates"] else cases.BASE_LR
        assert (cases.BASE_LR if stage.learning_rate is None else stage.learning_rate) == lr, epoch
        # the engine drops the outputs' values when copy_output_layer resolved falsy (the transitions themselves:
        # tests/test_pretrain_returnn_engine.py); a layer's own custom_param_importer is its mode otherwise
        outputs = {k: "reset" for k, v in want.items() if not k.startswith("#") and not rec["copy_output_layer"]
                   and (v.get("is_output_layer") if "is_output_layer" in v else k == "output" or v.get("loss"))}
        own = {k: v["custom_param_importer"] for k, v in want.items() if not k.startswith("#")
               and v.get("custom_param_importer")}
        assert stage.options.get("modes", {}) == {**own, **outputs}
    if "epoch_nets" not in rec:  # else a stage's epochs with different values are stages of their own
        assert [sched.stage(i).repetitions for i in range(len(sched._cache))] == [r for r in rec["repetitions"] if r]


ERROR_MESSAGES = {
    "skip_from_output": "output 'output' reads 'h2', which step 2 already removed",
    "two_outputs_both_peeled": "output 'output2' reads 'lstm2_bw', which step 1 already removed",
    "second_output_left_dangling": "leaves layer 'output2' of stage 0 reading 'lstm2_fw'",
    "reps_list_too_long": "repetitions lists 4 values but the construction made 2 stages",
    "reps_dict_index_out_of_range": "key 7 names no stage; the construction made 2 stages (0..1, or 'final'; RETURNN "
                                    "fails with an IndexError)",
    "bad_copy_param_mode": "copy_param_mode is 'sbuset'; did you mean 'subset'",
    "bad_algo": "construction_algo 'from_middle'",
    "bad_copy_output_layer": "copy_output_layer is 'exact'",
    "output_without_from": "output layer 'output' has no 'from': RETURNN's from_output fails on it (KeyError: 'from'",
    "layers_without_class": "layer 'h1' of the network has no 'class': RETURNN cannot build it",
    "layers_without_class_from_input": "layer 'h1' of the network has no 'class'",
    "data_aux_from_input": "layer 'a1' reads 'data:aux', and RETURNN's from_input knows no input but 'data'",
    "data_aux_output_from_input": "layer 'output' reads 'data:aux', and RETURNN's from_input knows no input but 'data'",
    # issue 29 item 7: an input never among input_layers is not "removed by a step"
    "data_aux_from_output": "output 'output' reads 'data:aux', an input not among input_layers ['data'] (RETURNN "
                            "fails with an AssertionError); pass input_layers=['data', 'data:aux']",
    "data_aux_hidden_from_output": "output 'output' reads 'data:aux', an input not among input_layers ['data']",
    "output_layers_string": "output_layers='output' is a string: RETURNN iterates its characters",
    "copy_output_layer_one": "copy_output_layer is 1; RETURNN takes None, True, False, 0,",
    "reps_dict_final_and_same_index": "keys 2 and 'final' both set stage 2",
    # the fresh trial (u29): an option RETURNN's Pretrain does not take names the one meant
    "input_layers_typo": "input_layers names 'dta', neither 'data', 'data:<key>' nor a layer; did you mean 'data'?: it "
                         "matches no source (RETURNN's from_output fails with an AssertionError)",
    "wrapped_repetition": "stage 0: '#repetition' is a WrapEpochValue: RETURNN takes '#repetition' out before it "
                          "resolves WrapEpochValues, and fails with a TypeError",
    "unknown_option": "unknown option 'repetitons'; did you mean 'repetitions'? (RETURNN's Pretrain fails on it",
    "config_key_as_option": "pretrain_repetitions is RETURNN's config key for its Pretrain's repetitions; pass "
                            "repetitions=",
    "from_input_aux_in_input_layers": "RETURNN's from_input knows no input but 'data', whatever input_layers says "
                                      "(it fails with KeyError: 'data:aux')",
}


@pytest.mark.parametrize("name", sorted(cases.ERROR_CASES))
def test_what_returnn_refuses_is_a_clear_error(name):
    net, kw = copy.deepcopy(cases.ERROR_CASES[name])
    assert name in RETURNN["errors"]  # RETURNN raised, or built a stage reading a layer it lacks
    with pytest.raises(GrowstageError) as e:
        returnn_pretrain(net, **kw)
    assert ERROR_MESSAGES[name] in str(e.value)


def test_sorted_from_and_breadth_first_are_the_returnn_option():
    net = cases.blstm(2)
    default, compat = layerwise(net), layerwise(net, compat="returnn")
    assert default[0]["output"]["from"] == ["lstm1_fw", "lstm1_bw"]   # growstage keeps source order
    assert compat[0]["output"]["from"] == ["lstm1_bw", "lstm1_fw"]    # RETURNN sorts
    short = cases.shortcut_net()
    assert len(layerwise(short, method="from_input")) == 4                    # longest path: one layer a stage
    assert len(layerwise(short, method="from_input", compat="returnn")) == 2  # breadth-first
    with pytest.raises(GrowstageError, match="did you mean 'returnn'"):
        layerwise(net, compat="retunn")
    with pytest.raises(GrowstageError, match="start= is growstage's"):
        layerwise(net, compat="returnn", start=2)


def test_growstage_default_keeps_outputs_merges_untrainable_and_rewires():
    two = layerwise(cases.two_outputs_high())  # RETURNN leaves output2 dangling here; growstage re-wires it
    assert [s["output2"]["from"] for s in two] == [["lstm1_fw", "lstm1_bw"]] + [["lstm2_fw", "lstm2_bw"]] * 2
    assert [sorted(k for k in s if k.startswith("lstm")) for s in two][0] == ["lstm1_bw", "lstm1_fw"]
    untr = layerwise(cases.untrainable())
    assert [sorted(s) for s in untr] == [s and sorted(s) for s in
                                         (plain(x) for x in RETURNN["cases"]["untrainable_from_output"]["stages"])]
    skip = layerwise(cases.skip_net())  # RETURNN's from_output fails on it
    assert [s["output"]["from"] for s in skip] == [["h3", "h1"], ["h4", "h2"]]  # h3 re-wired to read h1


def test_string_from_and_malformed_dicts():
    as_str = {"l1": {"class": "linear", "from": "data"}, "l2": {"class": "linear", "from": "l1"},
              "output": {"class": "softmax", "from": "l2"}}
    as_list = {k: {**v, "from": [v["from"]]} for k, v in as_str.items()}
    for compat in (None, "returnn"):
        assert layerwise(as_str, compat=compat) == layerwise(as_list, compat=compat)
    bad = [({"l1": "linear", "output": {}}, "layer 'l1' is str"),
           ({"l1": {"from": 3}, "output": {}}, "'from': 3"),
           ({"l1": {"from": ["dta"]}, "output": {"from": "l1"}}, "unknown layer 'dta'; did you mean 'data'"),
           ({"a": {"from": "b"}, "b": {"from": "a"}, "output": {"from": "b"}}, "cycle"),
           ({"l1": {}}, "output layer 'output'"), ([("l1", {})], "must be a dict")]
    for net, msg in bad:
        for compat in (None, "returnn"):
            with pytest.raises(GrowstageError, match=msg):
                layerwise(net, compat=compat)
    with pytest.raises(GrowstageError, match="did you mean 'from_input'"):
        layerwise(as_list, method="from_inptu")


def test_repetitions_like_returnn_and_refusals():
    assert pretrain_repetitions(0, 3) == pretrain_repetitions(None, 3) == [1, 1, 1]  # RETURNN: falsy -> 1
    assert pretrain_repetitions({"default": 2, "final": 5, 1: 0}, 3) == [2, 0, 5]  # RETURNN: TypeError
    for reps, msg in [([1, 2, 3, 4], "4 values but the construction made 3"), ({3: 1}, "names no stage"),
                      ({"fianl": 2}, "did you mean 'final'"),
                      (-1, r"int >= 0 \(the epochs of that stage\) \(RETURNN reads a negative count as 0 epochs\)"), ([1, "2"], r"repetitions\[1\]"),
                      ({-1: 2, "final": 3}, "both set stage 2"), (True, "give an int")]:
        with pytest.raises(GrowstageError, match=msg):
            pretrain_repetitions(reps, 3)
    net = cases.blstm(3)
    for reps in ([0], {"final": 0}, {"default": 0}):  # RETURNN would never train the full network
        with pytest.raises(GrowstageError, match="final network 0 epochs"):
            returnn_pretrain(net, repetitions=reps)


def test_hash_keys_are_stage_options():
    assert split_net_options({"#copy_param_mode": None, "l": {}}, "n") == ({"l": {}}, {"mode": "ifpossible"})
    for key, value, msg in [("#config", {"learning_rate": 0.1, "batch_size": 20}, "'batch_size'"),
                            ("#copy_param_mode", "subst", "did you mean 'subset'"),
                            ("#repetiton", 2, "did you mean '#repetition'"), ("#repetition", -1, "int >= 0"),
                            ("#config", {"learning_rate": "high"}, "number > 0")]:
        with pytest.raises(GrowstageError, match=msg):
            split_net_options({key: value}, "stage 0")
    # in the original net: the full network's options (RETURNN's from_output fails on them)
    stages = returnn_pretrain(cases.with_hash_keys())
    assert [(s["mode"], s["repetitions"], s.get("learning_rate")) for s in stages] == [
        ("ifpossible", 1, None), ("ifpossible", 1, None), ("ifpossible", 3, 0.5)]
    assert all(not any(k.startswith("#") for k in s["spec"]) for s in stages)
    layered = layerwise(cases.with_hash_keys())
    assert "#repetition" in layered[-1] and "#repetition" not in layered[0]


def test_construction_function_signature_copy_output_layer_and_greedy():
    seen = []

    def f(idx, net_dict):
        seen.append(net_dict)
        net_dict["output"]["n_out"] = 99  # works on a copy: the original stays
        return net_dict if idx < 1 else None

    net = cases.blstm(1)
    stages = returnn_pretrain(net, construction_algo=f, copy_output_layer="subset")
    assert [s["spec"]["output"].get("n_out") for s in stages] == [99, None] and seen[0] is not seen[1]
    # RETURNN's engine tests copy_output_layer for falsiness only: 'subset' gives the outputs no mode of their own
    assert "modes" not in stages[1] and stages[1]["mode"] == "ifpossible"
    with pytest.raises(GrowstageError, match="idx= and net_dict="):
        returnn_pretrain(net, construction_algo=lambda i, prev_spec: None)
    with pytest.raises(GrowstageError, match="frozen"):
        returnn_pretrain(net, greedy=True)
    with pytest.raises(GrowstageError, match="construction function"):
        returnn_pretrain(net, construction_algo=lambda idx, net_dict: {"l": 1} if idx == 0 else None)


def test_schedule_stage_options_beside_the_architecture():
    with pytest.raises(GrowstageError, match=r"'mode' beside the architecture, but no 'spec' key"):
        Schedule(lambda st: None, stages=[{"w": 6, "mode": "exact"}]).stage(0)
    st = Schedule(lambda st: None, stages=[{"spec": {"w": 6}, "mode": "exact"}]).stage(0)
    assert (st.spec, st.mode) == ({"w": 6}, "exact")
    net = {**cases.blstm(1), "#copy_param_mode": "subset", "#repetition": 2}
    st = Schedule(lambda st: None, stages=[net]).stage(0)
    assert (st.mode, st.repetitions, "#repetition" in st.spec) == ("subset", 2, False)
    with pytest.raises(GrowstageError, match="given twice"):
        Schedule(lambda st: None, stages=[{"spec": net, "mode": "exact"}]).stage(0)


def build_from_net_dict(stage):
    """A tiny Keras frontend for the dicts of these tests: linear and softmax layers, names kept."""
    net = stage.spec
    x = keras.Input((5,), name="data")
    made = {"data": x}

    def make(name):
        if name not in made:
            src = [make(s) for s in net[name]["from"]]
            h = src[0] if len(src) == 1 else keras.layers.Concatenate()(src)
            act = "softmax" if net[name]["class"] == "softmax" else net[name].get("activation")
            made[name] = keras.layers.Dense(net[name].get("n_out", 3), activation=act, name=name)(h)
        return made[name]

    return keras.Model(x, make("output"))


@pytest.mark.parametrize("copy_output_layer,output_action", [(None, "copied"), (False, "kept-init")])
def test_stages_build_in_keras_and_fit_two_stages(copy_output_layer, output_action):
    net = {"l1": {"class": "linear", "activation": "tanh", "n_out": 6, "from": "data"},
           "l2": {"class": "linear", "activation": "tanh", "n_out": 6, "from": "l1"},
           "output": {"class": "softmax", "loss": "ce", "n_out": 3, "from": "l2"}}
    sched = Schedule(build_from_net_dict, stages=returnn_pretrain(net, copy_output_layer=copy_output_layer))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)).astype("f4"), rng.integers(0, 3, 16)
    kept = {}
    hist = fit(sched, x, y, epochs=2, seed=0, log=None, batch_size=8,
               on_epoch_end=lambda e, m, logs: kept.setdefault(e, {w.path: np.array(w) for w in m.weights}),
               # learning rate 0: training leaves the weights as the transfer wrote them
               compile=lambda m, s: m.compile(optimizer=keras.optimizers.SGD(0.0),
                                              loss="sparse_categorical_crossentropy"))
    assert [e["stage"] for e in hist.epochs] == [0, 1] and hist.rebuilds == 1
    rep = hist.transitions[0]["report"]
    assert rep.row("l1/kernel").action == "copied" and rep.row("output/kernel").action == output_action
    assert np.array_equal(kept[1]["l1/kernel"], kept[0]["l1/kernel"])
    assert np.array_equal(kept[1]["output/kernel"], kept[0]["output/kernel"]) == (output_action == "copied")
    assert [layer.name for layer in hist.model.layers if layer.weights] == ["l1", "l2", "output"]
    assert growstage.layerwise is layerwise


def test_a_stage_mode_that_overrides_the_schedules_is_noted():
    import keras
    import numpy as np

    def build(stage):
        x = keras.Input((3,))
        h = keras.layers.Dense(stage.spec["w"], name="h")(x)
        return keras.Model(x, keras.layers.Dense(2, name="out")(h))

    stages = [{"spec": {"w": 2}}, {"spec": {"w": 4}, "mode": "ifpossible"}]
    note = "stage 1: its own mode 'ifpossible' overrides the schedule's mode='subset'"
    sched = growstage.Schedule(build, stages=stages, mode="subset")
    assert sched.stage(1).notes == [note]
    assert growstage.Schedule(build, stages=stages).stage(1).notes == []  # the default was not a choice
    hist = growstage.fit(sched, np.ones((4, 3), "f4"), np.ones((4, 2), "f4"), epochs=2, log=None,
                         compile=lambda m, s: m.compile(optimizer="sgd", loss="mse"))
    assert note in hist.transitions[0]["report"].notes
