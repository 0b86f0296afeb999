"""Loading only named layers (issue 12, item 5): ``only=[...]`` for plan/transfer, the layers left out
untouched and reported as such, ignored-but-existing layers reported as kept (not "new layer"), and a
source layer without a home is one problem naming the layer, not one per param with a wrong suggestion."""
import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import PlanError

L = keras.layers


def _convs(x):
    h = L.Conv1D(4, 3, padding="same", name="conv_1")(x)
    return L.Conv1D(4, 3, padding="same", name="conv_2")(h)


def _old():
    x = keras.Input((None, 3))
    h = L.Bidirectional(L.LSTM(3, return_sequences=True), name="lstm_bw")(_convs(x))
    return keras.Model(x, L.Dense(2, name="lin_1")(h), name="old")


def _new():
    x = keras.Input((None, 3))
    h = L.GRU(5, return_sequences=True, name="decoder")(_convs(x))
    return keras.Model(x, L.Dense(2, name="out")(h))


def _values(m):
    return {v.path: v.numpy().copy() for v in m.variables}


def test_only_loads_the_named_layers_and_reports_the_rest(tmp_path):
    old, new = _old(), _new()
    path = str(tmp_path / "old.weights.h5")
    old.save_weights(path)
    before = _values(new)
    rep = growstage.transfer(path, new, source_model=old, only=["conv_1", "conv_2"])
    assert rep.counts() == {"copied": 4, "kept-init": 5, "ignored": 8}
    assert {r.layer for r in rep.rows if r.reason == "not in only=: untouched"} == {"decoder", "out"}
    assert {r.source_layer for r in rep.rows if r.reason == "not in only="} == {"lstm_bw", "lin_1"}
    assert "new layer" not in rep.table()
    for name in ("conv_1", "conv_2"):
        assert np.array_equal(new.get_layer(name).kernel.numpy(), old.get_layer(name).kernel.numpy())
    for v in new.get_layer("decoder").weights + new.get_layer("out").weights:
        assert np.array_equal(v.numpy(), before[v.path]), v.path


def test_only_into_a_nested_sub_model_needs_no_ignore_list(tmp_path):
    old = _old()
    path = str(tmp_path / "old.weights.h5")
    old.save_weights(path)
    c = keras.Input((None, 3))
    x = keras.Input((None, 3))
    new = keras.Model(x, L.Dense(2, name="out")(keras.Model(c, _convs(c), name="conv_layers")(x)))
    rep = growstage.transfer(path, new.get_layer("conv_layers"), source_model=old, only=["conv_1", "conv_2"])
    assert rep.counts() == {"copied": 4, "ignored": 8}


def test_without_only_each_homeless_source_layer_is_one_problem():
    with pytest.raises(PlanError) as e:
        growstage.plan(_old(), _new())
    msg = str(e.value)
    assert "source layer 'lstm_bw' (6 params) has no layer in the target" in msg and "only=[...]" in msg
    assert "source layer 'lin_1' (2 params)" in msg
    assert "did you mean 'lin_1/kernel'" not in msg and len(e.value.problems) == 2 + 5  # + decoder/out params


def test_an_ignored_layer_the_target_has_is_kept_not_new():
    old, new = _old(), _new()
    before = _values(new)
    p = growstage.plan(old, new, only=["conv_1", "conv_2"], ignore=["conv_2"], allow_new_layers=True)
    rows = [r for r in p.rows if r.layer == "conv_2"]
    assert {(r.action, r.reason) for r in rows} == {("kept-init", "source layer in ignore=: kept")}
    growstage.apply(p)
    assert np.array_equal(new.get_layer("conv_2").kernel.numpy(), before[new.get_layer("conv_2").kernel.path])


def test_only_names_must_exist():
    with pytest.raises(PlanError, match="only: unknown target layer 'conv1'; did you mean 'conv_1'"):
        growstage.plan(_old(), _new(), only=["conv1"])


def _chain(names):
    x = keras.Input((4,))
    h = x
    for n in names:
        h = L.Dense(4, name=n)(h)
    return keras.Model(x, h)


def test_only_with_a_rename_list_loads_the_named_copy_and_ignores_the_rest():
    old, new = _chain(["b0", "head"]), _chain(["b0", "b1", "head"])
    before = _values(new)
    rep = growstage.transfer(old, new, rename={"b0": ["b0", "b1"]}, only=["b1"])
    assert np.array_equal(new.get_layer("b1").kernel.numpy(), old.get_layer("b0").kernel.numpy())
    for name in ("b0", "head"):
        for v in new.get_layer(name).weights:
            assert np.array_equal(v.numpy(), before[v.path]), v.path
    assert {r.source_layer for r in rep.rows if r.action == "ignored"} == {"head"}


def test_a_stacked_source_layer_is_not_homeless():
    old, new = _chain(["b0", "head"]), _chain(["c0", "c1", "head"])
    rep = growstage.transfer(old, new, rename={"b0": ["c0", "c1"]})
    assert rep.counts() == {"copied": 6}


def test_a_param_path_in_only_names_its_layer():
    old, new = _chain(["b0", "head"]), _chain(["b0", "head"])
    with pytest.raises(PlanError, match="did you mean 'b0'"):
        growstage.plan(old, new, only=["b0/kernel"])


def test_rebuild_wants_a_build_function():
    old = _chain(["b0"])
    with pytest.raises(growstage.GrowstageError, match="lambda"):
        growstage.rebuild(_chain(["b0"]), old)
    with pytest.raises(growstage.GrowstageError, match="not a Keras model"):
        growstage.rebuild(lambda: None, old)
