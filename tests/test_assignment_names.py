"""init_from_checkpoint on a model with a BLSTM and an Embedding (issue 12, item 4): growstage
names and Keras paths both name targets, a scope map demands only params, rows have no stray '/',
a TF1 ':0' suffix is accepted, and the report carries real timings."""
import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import PlanError

L = keras.layers


def _model():
    x = keras.Input((None,), dtype="int32")
    h = L.Embedding(10, 4, name="emb")(x)
    h = L.Bidirectional(L.LSTM(3, return_sequences=True, dropout=0.1), name="blstm0")(h)
    h = L.Dropout(0.1, name="drop")(h)
    return keras.Model(x, L.Dense(2, name="out")(h))


@pytest.fixture()
def ckpt(tmp_path):
    src = _model()
    vals = {f"old_scope/{l}/{p}": a for l, ps in growstage.snapshot(src).values_dict().items() for p, a in ps.items()}
    vals["new_scope_1/var1"] = np.full((2,), 7.0, "f4")
    path = str(tmp_path / "old.npz")
    np.savez(path, **vals)
    return src, path


def test_a_root_scope_map_needs_params_only_and_rows_have_no_leading_slash(ckpt):
    src, path = ckpt
    model = _model()
    assert any("seed_generator" in v.path for v in model.variables)  # what must not be demanded
    rep = growstage.init_from_checkpoint(path, {"old_scope/": "/"}, model)
    assert len(rep.rows) == 9
    assert not any(r.target.startswith("/") for r in rep.rows)
    assert rep.row("blstm0/forward_layer/cell/kernel").source == "old_scope/blstm0/forward_layer/cell/kernel"
    assert rep.seconds > 0
    for a, b in zip(src.trainable_variables, model.trainable_variables):
        assert np.array_equal(a.numpy(), b.numpy()), a.path


def test_growstage_names_keras_paths_and_tf1_suffixes_all_name_targets(ckpt):
    src, path = ckpt
    model = _model()
    fw = "old_scope/blstm0/forward_layer/cell/kernel"
    rep = growstage.init_from_checkpoint(path, {
        fw: "blstm0/forward_layer/cell/kernel",
        "old_scope/blstm0/backward_layer/cell/kernel": model.get_layer("blstm0").backward_layer.cell.kernel.path,
        "new_scope_1/var1:0": "out/bias:0",
    }, model)
    assert {r.target for r in rep.rows} == {"blstm0/forward_layer/cell/kernel", "blstm0/backward_layer/cell/kernel",
                                             "out/bias"}
    assert np.array_equal(model.get_layer("blstm0").forward_layer.cell.kernel.numpy(),
                          src.get_layer("blstm0").forward_layer.cell.kernel.numpy())
    assert model.get_layer("out").bias.numpy().tolist() == [7.0, 7.0]


def test_a_scope_map_with_a_typo_names_the_closest_scope(ckpt):
    _, path = ckpt
    with pytest.raises(PlanError, match="'blstm/' covers no param of the model; did you mean 'blstm0/"):
        growstage.init_from_checkpoint(path, {"old_scope/blstm0/": "blstm/"}, _model())
