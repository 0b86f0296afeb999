"""RETURNN interop against RETURNN itself: a checkpoint RETURNN wrote (tests/fixtures, made by
make_returnn_fixtures.py with returnn's TF backend) loads into the frontend-built Keras model and
gives RETURNN's outputs; and back to RETURNN's names and layouts."""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

import growstage
import growstage.returnn as gr
from growstage.io.readers import open_checkpoint

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
PREFIX = os.path.join(FIX, "returnn_net.ckpt")


def _load(stem):
    with open(os.path.join(FIX, f"{stem}.json")) as fp:
        spec = json.load(fp)
    with np.load(os.path.join(FIX, f"{stem}_outputs.npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return spec["network"], spec["extern_data"], arrays


@pytest.fixture(scope="module")
def fixture():
    return _load("returnn_net")


def _layer_outputs(model, names):
    # a direction -1 rec layer's output in time order is its __reverse layer's; a subnetwork's is that of
    # its call in the outer graph (its last inbound node), not its inner output
    known = {l.name for l in model.layers}
    tensors = [model.get_layer(f"{n}__reverse" if f"{n}__reverse" in known else n)._inbound_nodes[-1].output_tensors[0]
               for n in names]
    return keras.Model(model.input, tensors)


@pytest.mark.parametrize("stem, n_params", [("returnn_net", 23), ("returnn_seed", 12)])
def test_returnn_checkpoint_gives_returnns_outputs(stem, n_params):
    """linear, conv, batch_norm, layer_norm, standardlstm and nativelstm2 BLSTMs, softmax (returnn_net);
    strided conv, pad, conv with input_add_feature_dim, merge_dims, window, combine, dropout, copy of
    two sources and a subnetwork (returnn_seed): every layer's output equals RETURNN's."""
    net, extern, arrays = _load(stem)
    model = gr.build_model(net, extern)
    report = growstage.transfer(gr.open_returnn(os.path.join(FIX, f"{stem}.ckpt")), model)
    assert report.counts() == {"copied": n_params}
    if stem == "returnn_net":
        assert any("slstm_fw: standardlstm, forget_bias 1.0 folded" in n for n in report.notes)
    outs = _layer_outputs(model, list(net))(arrays["input"])
    for name, got in zip(net, outs):
        # float32 arithmetic in another order (TF LSTMCell / NativeLstm2 kernels vs Keras LSTM)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), arrays[f"out/{name}"], rtol=1e-5, atol=1e-5, err_msg=name)


def test_returnn_checkpoint_by_preload_and_initializer(fixture):
    net, extern, arrays = fixture
    model = gr.build_model(net, extern)
    report = growstage.preload(model, {"all": {"filename": gr.open_returnn(PREFIX)}})
    assert report.counts() == {"copied": 23}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(arrays["input"])), arrays["out/output"], rtol=1e-5, atol=1e-5)
    init = growstage.initializers.FromCheckpoint(PREFIX, "nlstm_bw/cell/kernel", reader="returnn")
    lstm = keras.layers.LSTM(3, kernel_initializer=init)
    lstm.build((None, None, 8))
    with gr.open_returnn(PREFIX) as r:
        assert np.array_equal(lstm.cell.kernel.numpy(), r.read("nlstm_bw/cell/kernel"))


def test_a_returnn_checkpoint_grows_gate_by_gate(fixture):
    net, extern, _ = fixture
    wide = json.loads(json.dumps(net))
    for side in ("nlstm_fw", "nlstm_bw"):
        wide[side]["n_out"] = 5
    model = gr.build_model(wide, extern)
    report = growstage.transfer(gr.open_returnn(PREFIX), model, mode="subset")
    assert report.counts() == {"copied": 16, "padded": 7}  # 2 x 3 LSTM params and the output kernel
    with gr.open_returnn(PREFIX) as r:
        old_k, old_out = r.read("nlstm_fw/cell/recurrent_kernel"), r.read("output/kernel")
    new_k = model.get_layer("nlstm_fw").cell.recurrent_kernel.numpy()
    for gate in range(4):  # Keras i, f, c, o: each gate's old block at the start of its new block
        assert np.array_equal(new_k[:3, gate * 5:gate * 5 + 3], old_k[:, gate * 3:(gate + 1) * 3])
    new_out = model.get_layer("output").kernel.numpy()  # reads [fw, bw]: each source's rows apart
    assert np.array_equal(new_out[:3], old_out[:3]) and np.array_equal(new_out[5:8], old_out[3:6])


def test_a_returnn_blstm_pair_is_a_keras_bidirectional(fixture):
    """RETURNN's lstm_fw / lstm_bw rec layers into a hand-built Keras model with one Bidirectional."""
    _, _, arrays = fixture
    x = keras.Input((None, 8))
    h = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), name="nlstm")(x)
    model = keras.Model(x, keras.layers.Dense(7, activation="softmax", name="output")(h))
    report = growstage.transfer(gr.open_returnn(PREFIX), model, rules=gr.rules(bidirectional=True), ignore_unused=True)
    assert report.counts() == {"copied": 8, "unused": 15}
    feats = np.concatenate([arrays["out/slstm_fw"], arrays["out/slstm_bw"]], axis=-1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(feats)), arrays["out/output"], rtol=1e-5, atol=1e-5)
    back = gr.to_returnn(model)  # and back: nlstm_fw / nlstm_bw, as RETURNN named them
    with open_checkpoint(PREFIX) as orig:
        assert sorted(back) == sorted(n for n in orig if n.startswith(("nlstm", "output")))
        assert all(np.array_equal(v, orig.read(k)) for k, v in back.items())


def test_back_to_returnn_names_and_layouts(fixture, tmp_path):
    net, extern, _ = fixture
    model = gr.build_model(net, extern)
    growstage.transfer(gr.open_returnn(PREFIX), model)
    back = gr.to_returnn(model, net_dict=net)
    with open_checkpoint(PREFIX) as orig:
        assert sorted(back) == sorted(orig)
        for name in orig:
            if name.endswith("lstm_cell/bias"):  # b_f + 1.0 - 1.0: float arithmetic
                np.testing.assert_allclose(back[name], orig.read(name), atol=1e-6)
            else:
                assert np.array_equal(back[name], orig.read(name)), name
        gr.save_checkpoint(back, tmp_path / "model.002", global_step=5)
        with open_checkpoint(tmp_path / "model.002") as again:
            assert sorted(again) == sorted(orig) and "global_step" in again.optimizer
            assert np.array_equal(again.read("nlstm_fw/rec/W_re"), orig.read("nlstm_fw/rec/W_re"))


def test_training_state_of_a_returnn_checkpoint_is_set_apart(tmp_path):
    gr.save_checkpoint({"out/W": np.ones((2, 2), "f4"), "out/W/Adam": np.ones((2, 2), "f4"),
                        "out/W/Adam_1": np.ones((2, 2), "f4"), "beta1_power": np.ones((), "f4")}, tmp_path / "m",
                       global_step=3)
    with gr.open_returnn(tmp_path / "m") as r:
        assert list(r) == ["out/kernel"]
        assert sorted(r.optimizer) == ["beta1_power", "global_step", "out/W/Adam", "out/W/Adam_1"]


def test_unknown_returnn_param_and_forget_bias_layer_are_errors(tmp_path):
    gr.save_checkpoint({"out/W": np.ones((2, 2), "f4"), "out/mystery": np.ones(2, "f4")}, tmp_path / "m")
    with pytest.raises(growstage.PlanError, match="'out/mystery' is no RETURNN param name"):
        gr.open_returnn(tmp_path / "m")
    assert sorted(gr.open_returnn(tmp_path / "m", ignore=["out/mystery"])) == ["out/kernel"]
    with pytest.raises(growstage.GrowstageError, match="'lstm_x' is not a standardlstm layer"):
        gr.open_returnn(tmp_path / "m", ignore=["out/mystery"], forget_bias={"lstm_x": 0.0})


def test_forget_bias_zero_is_not_folded(fixture):
    with gr.open_returnn(PREFIX, forget_bias={"slstm_fw": 0.0}) as r, open_checkpoint(PREFIX) as raw:
        n = 4
        b = raw.read("slstm_fw/rec/lstm_cell/bias")
        assert np.array_equal(r.read("slstm_fw/cell/bias")[n:2 * n], b[2 * n:3 * n])  # TF f block, unchanged
        folded = raw.read("slstm_bw/rec/lstm_cell/bias")[2 * n:3 * n] + 1
        assert np.allclose(r.read("slstm_bw/cell/bias")[n:2 * n], folded)


def test_save_checkpoint_refuses_a_missing_folder_and_non_numbers(tmp_path):
    with pytest.raises(growstage.GrowstageError, match="does not exist"):
        gr.save_checkpoint({"a/W": np.zeros((2, 2), "f4")}, tmp_path / "nodir" / "model")
    for bad in (None, "hello"):
        with pytest.raises(growstage.GrowstageError, match="'a/W' is not a numeric array"):
            gr.save_checkpoint({"a/W": bad}, tmp_path / "model")
    assert not list(tmp_path.iterdir())
