"""The RETURNN network-dict frontend: the seed question's two networks ("How can I load the weights
of some layer of a trained network in a new network"), errors that name the layer and the option,
and Schedules built from net dicts."""
from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

import growstage
import growstage.returnn as gr

EXTERN = {"data": {"dim": 1}, "classes": {"dim": 10, "sparse": True}}
CONVS = {
    "conv_1": {"class": "conv", "filter_size": (400,), "activation": "abs", "padding": "valid", "strides": 10,
               "n_out": 64},
    "pad_conv_1_time_dim": {"class": "pad", "axes": "time", "padding": 20, "from": ["conv_1"]},
    "conv_2": {"class": "conv", "input_add_feature_dim": True, "filter_size": (40, 64), "activation": "abs",
               "padding": "valid", "strides": 16, "n_out": 128, "from": ["pad_conv_1_time_dim"]},
    "flatten_conv": {"class": "merge_dims", "axes": "except_time", "n_out": 128, "from": ["conv_2"]},
}
NET1 = {  # the trained network of the question
    **CONVS,
    "window_1": {"class": "window", "window_size": 17, "from": ["flatten_conv"]},
    "flatten_window": {"class": "merge_dims", "axes": "except_time", "from": ["window_1"]},
    "lin_1": {"class": "linear", "activation": None, "n_out": 512, "from": ["flatten_window"]},
    "ff_2": {"class": "linear", "activation": "relu", "n_out": 2000, "from": ["lin_1"]},
    "output": {"class": "softmax", "loss": "ce", "from": ["ff_2"]},
}
RNN_NODES = 32


def net2(load_on_init=None):
    """The new network, with the accepted answer's subnetwork around the four conv layers."""
    sub = copy.deepcopy(CONVS)
    sub["output"] = sub.pop("flatten_conv")
    convs = {"class": "subnetwork", "from": ["data"], "subnetwork": sub}
    if load_on_init is not None:
        convs["load_on_init"] = load_on_init
    return {
        "convs": convs,
        "lstm1_fw": {"class": "rec", "unit": "lstmp", "n_out": RNN_NODES, "direction": 1, "from": ["convs"]},
        "lstm1_bw": {"class": "rec", "unit": "lstmp", "n_out": RNN_NODES, "direction": -1, "from": ["convs"]},
        "lin_1": {"class": "linear", "activation": None, "n_out": 512, "from": ["lstm1_fw", "lstm1_bw"]},
        "ff_2": {"class": "linear", "activation": "relu", "n_out": 2000, "from": ["lin_1"]},
        "ff_3": {"class": "linear", "activation": "relu", "n_out": 2000, "from": ["ff_2"]},
        "ff_4": {"class": "linear", "activation": "relu", "n_out": 2000, "from": ["ff_3"]},
        "output": {"class": "softmax", "loss": "ce", "from": ["ff_4"]},
    }


def _train_step(model, x):
    before = {w.path: w.numpy() for w in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    y = np.zeros((x.shape[0], 4), "int32")  # 1000 samples -> 61 frames after conv_1 -> 4 after conv_2
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(before[w.path], w.numpy()) for w in model.trainable_weights)


def _values(model):
    return {k: p.read().copy() for k, p in growstage.snapshot(model).flat().items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The first network built from its dict, trained a step, saved as RETURNN and as growstage checkpoints."""
    keras.utils.set_random_seed(1)
    m1 = gr.build_model(NET1, EXTERN)
    x = np.random.default_rng(0).normal(size=(2, 1000, 1)).astype("float32")
    _train_step(m1, x)
    d = tmp_path_factory.mktemp("seed")
    gr.save_checkpoint(gr.to_returnn(m1), d / "net1.ckpt", global_step=1)
    growstage.save(growstage.snapshot(m1), d / "net1.h5")
    return m1, x, d


def test_seed_networks_load_conv_layers_by_load_on_init(trained):
    m1, x, d = trained
    keras.utils.set_random_seed(2)
    fresh = _values(gr.build_model(net2(), EXTERN))
    keras.utils.set_random_seed(2)
    m2 = gr.build_model(net2(load_on_init=str(d / "net1.ckpt")), EXTERN)
    # the checkpoint's other layers (lin_1, ff_2, output) are not used, and the report says so
    assert gr.load_reports(m2)["convs"].counts() == {"copied": 2, "unused": 6}
    got, trained_values = _values(m2), _values(m1)
    for key, value in got.items():
        if key.startswith("convs/"):
            assert np.array_equal(value, trained_values[key[len("convs/"):]]), key
        else:
            assert np.array_equal(value, fresh[key]), key  # the other layers keep their init
    _train_step(m2, x)


def test_seed_networks_load_conv_layers_by_preload_with_prefix(trained):
    m1, x, d = trained
    keras.utils.set_random_seed(3)
    m3 = gr.build_model(net2(), EXTERN)
    fresh = _values(m3)
    report = growstage.preload(m3, {"convs": {"filename": str(d / "net1.h5"), "prefix": "convs/"}})
    assert report.counts() == {"copied": 2, "kept-init": 16, "unused": 6}  # what preload left is reported too
    assert {r.reason for r in report.rows if r.action == "kept-init"} == {"no preload entry selects it"}
    assert report.row("convs/conv_2/kernel").source_name == "conv_2/kernel"
    assert report.row("convs/conv_2/kernel").rule == "preload 'convs': prefix 'convs/'"
    got = _values(m3)
    assert np.array_equal(got["convs/conv_2/kernel"], m1.get_layer("conv_2").kernel.numpy())
    assert all(np.array_equal(v, fresh[k]) for k, v in got.items() if not k.startswith("convs/"))


def test_the_questions_flat_new_network_loads_its_conv_layers_by_preload(trained):
    """The new network exactly as the question wrote it (conv layers at the top level), RETURNN-style."""
    m1, x, d = trained
    flat = {**CONVS, **{k: v for k, v in net2().items() if k != "convs"}}
    for side in ("lstm1_fw", "lstm1_bw"):
        flat[side] = dict(flat[side], **{"from": ["flatten_conv"]})
    m = gr.build_model(flat, EXTERN)
    fresh = _values(m)
    report = growstage.preload(m, {"convs": {"filename": gr.open_returnn(d / "net1.ckpt"), "ignore_missing": True,
                                             "ignore_params_prefixes": ["lin_1/", "ff_2/", "output/"]}})
    assert report.counts() == {"copied": 2, "kept-init": 16, "ignored": 6}
    assert {r.reason for r in report.rows if r.action == "ignored"} == {"preload 'convs': ignore_params"}
    got = _values(m)
    assert np.array_equal(got["conv_1/kernel"], m1.get_layer("conv_1").kernel.numpy())
    assert all(np.array_equal(v, fresh[k]) for k, v in got.items() if not k.startswith("conv_"))


def test_load_on_init_is_strict(trained, tmp_path):
    _, _, d = trained
    gr.save_checkpoint({"conv_1/W": np.zeros((400, 1, 64), "f4")}, tmp_path / "part")
    with pytest.raises(growstage.PlanError, match="conv_2/kernel"):
        gr.build_model(net2(load_on_init=str(tmp_path / "part")), EXTERN)
    with pytest.raises(gr.NetDictError, match="layer 'convs': load_on_init option 'prefix'"):
        gr.build_model(net2(load_on_init={"filename": str(d / "net1.ckpt"), "prefix": "x"}), EXTERN)


@pytest.mark.parametrize("net, match", [
    ({"output": {"class": "softmaxx", "n_out": 2}}, "layer 'output': unknown class 'softmaxx'; did you mean 'softmax'"),
    ({"output": {"class": "linear", "n_out": 2, "activaton": "relu"}},
     "layer 'output': option 'activaton' is not supported for class 'linear'; did you mean 'activation'"),
    ({"output": {"class": "linear", "n_out": 2, "from": ["lin"]}, "lin1": {"class": "copy"}},
     "layer 'output': reads unknown layer 'lin'; did you mean 'lin1'"),
    ({"output": {"class": "rec", "unit": "gru", "n_out": 2}}, "layer 'output': rec unit 'gru' is not supported"),
    ({"output": {"class": "linear", "n_out": 2, "activation": "relux"}}, "activation 'relux' is not supported"),
    ({"a": {"class": "copy", "from": "b"}, "b": {"class": "copy", "from": "a"},
      "output": {"class": "copy", "from": "a"}},
     "form a cycle"),
    ({"output": {"class": "copy", "from": "data:feats"}}, "extern_data has no 'feats'"),
    ({"lin": {"class": "linear", "n_out": 2}}, "no output layer"),
    ({"output": {"class": "linear", "n_out": 2, "from": "data:classes"}}, "linear on sparse data"),
    ({"output": {"class": "conv", "filter_size": [3], "padding": "same_static", "n_out": 2}},
     "layer 'output': conv padding 'same_static'"),
    ({"output": {"class": "pad", "axes": "F", "padding": 1}}, "pad axes 'F'"),
    ({"output": {"class": "combine", "kind": "sub", "from": ["data", "data"]}}, "combine kind 'sub'"),
    ({"output": {"class": "copy"}, "unused": {"class": "linear", "n_out": 2, "L2": 0.1}},
     "layer 'unused': option 'L2' is not supported for class 'linear'"),
    ({"output": {"class": "copy", "from": "data:nodim"}}, r"extern_data\['nodim'\] needs a 'dim'"),
])
def test_frontend_errors_name_the_layer_and_the_option(net, match):
    with pytest.raises(gr.NetDictError, match=match):
        gr.build_model(net, {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}, "nodim": {"sparse": True}})


def test_string_from_hash_keys_and_frozen_layers():
    net = {"#copy_param_mode": "subset", "l1": {"class": "linear", "n_out": 4, "from": "data", "trainable": False},
           "ln": {"class": "layer_norm", "from": "l1"}, "bn": {"class": "batch_norm", "from": "ln"},
           "output": {"class": "softmax", "n_out": 3, "from": ["bn", "l1"]}}
    m = gr.build_model(net, {"data": {"dim": 5}})
    assert not m.get_layer("l1").trainable and m.get_layer("output").kernel.shape == (8, 3)
    assert growstage.snapshot(m)["output"]["kernel"].split == [[4, 4], [3]]  # block-wise growth sees both sources


def test_layerwise_stages_build_and_fit_with_the_frontend():
    net = {"l1_fw": {"class": "rec", "unit": "nativelstm2", "n_out": 4, "direction": 1, "from": ["data"]},
           "l1_bw": {"class": "rec", "unit": "nativelstm2", "n_out": 4, "direction": -1, "from": ["data"]},
           "l2_fw": {"class": "rec", "unit": "nativelstm2", "n_out": 4, "direction": 1, "from": ["l1_fw", "l1_bw"]},
           "l2_bw": {"class": "rec", "unit": "nativelstm2", "n_out": 4, "direction": -1, "from": ["l1_fw", "l1_bw"]},
           "output": {"class": "softmax", "loss": "ce", "from": ["l2_fw", "l2_bw"]}}
    extern = {"data": {"dim": 3}, "classes": {"dim": 5, "sparse": True}}
    sched = growstage.Schedule(gr.builder(extern), stages=growstage.layerwise(net))
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")
    y = np.zeros((4, 6), "int32")
    hist = growstage.fit(sched, x, y, epochs=2, seed=0, log=None,
                         compile=lambda m, s: m.compile(optimizer="adam", loss="sparse_categorical_crossentropy"))
    assert [e["stage"] for e in hist.epochs] == [0, 1] and hist.rebuilds == 1


def test_layer_base_options_on_every_class_and_n_out_checked_against_the_output():
    """issue 27, item 9: RETURNN accepts LayerBase's options (n_out, out_type, loss, trainable, ...) on every
    class; on a class that does not take n_out, it must say what the layer builds."""
    sub = {"lin": {"class": "linear", "n_out": 6, "from": "data"},
           "output": {"class": "copy", "from": "lin", "n_out": 6}}
    net = {"enc": {"class": "subnetwork", "subnetwork": sub, "n_out": 6, "from": "data", "trainable": True},
           "ln": {"class": "layer_norm", "from": "enc", "n_out": 6, "out_type": {"dim": 6}},
           "drop": {"class": "dropout", "dropout": 0.1, "from": "ln", "n_out": 6},
           "output": {"class": "softmax", "n_out": 4, "from": "drop", "loss": "ce", "loss_scale": 0.5,
                      "loss_opts": {"label_smoothing": 0.1}, "target": "classes"}}
    m = gr.build_model(net, {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}})
    assert tuple(m.get_layer("enc").output.shape) == (None, None, 6)
    for where, bad, match in (("enc", {"n_out": 5}, "layer 'enc': n_out is 5, but the layer's output has 6 features"),
                              ("ln", {"out_type": {"dim": 7}}, "out_type's dim is 7, but the layer's output has 6"),
                              ("drop", {"n_out": "6"}, "option 'n_out' is '6', not a whole number")):
        broken = copy.deepcopy(net)
        broken[where].update(bad)
        with pytest.raises(gr.NetDictError, match=match):
            gr.build_model(broken, {"data": {"dim": 3}, "classes": {"dim": 4, "sparse": True}})
