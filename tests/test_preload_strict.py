"""preload is strict (issue 12, items 1, 2 and 5): every name in an entry's options matches
something, a call whose filters leave nothing to load is an error, and ``only`` loads named layers."""
import keras
import numpy as np
import pytest

import growstage
from growstage.core.errors import GrowstageError, PlanError

L = keras.layers


def _net(prefix=""):
    x = keras.Input((3,))
    h = L.Dense(4, name=f"{prefix}conv_1")(x)
    h = L.Dense(4, name=f"{prefix}conv_2")(h)
    h = L.Dense(4, name=f"{prefix}ff_2")(h)
    return keras.Model(x, L.Dense(2, name=f"{prefix}lin_1")(h))


@pytest.fixture()
def saved(tmp_path):
    old = _net()
    path = str(tmp_path / "old.h5")
    growstage.save(growstage.snapshot(old), path)
    return old, path


def _values(m):
    return {v.path: v.numpy().copy() for v in m.variables}


@pytest.mark.parametrize("opt, bad, hint", [
    ("ignore_params", ["conv_1/kernal"], "'conv_1/kernel'"),
    ("ignore_params_prefixes", ["ff2"], "'ff_2"),
    ("ignore_params_prefixes", ["lin1"], "'lin_1"),
    ("var_name_mapping", {"conv_1/kernal": "conv_1/kernel"}, "'conv_1/kernel'"),
    ("only", ["conv1"], "'conv_1'"),
])
def test_a_typo_in_any_option_is_an_error_naming_it(saved, opt, bad, hint):
    _, path = saved
    new = _net()
    before = _values(new)
    name = bad[0] if isinstance(bad, list) else next(iter(bad))
    with pytest.raises(PlanError, match=rf"{opt} (key )?{name!r}.*did you mean {hint}"):
        growstage.preload(new, {"a": {"filename": path, opt: bad}})
    assert all(np.array_equal(before[v.path], v.numpy()) for v in new.variables)


def test_a_prefix_that_matches_nothing_names_the_closest_layer(saved):
    _, path = saved
    with pytest.raises(PlanError, match="prefix 'conv1' selects no target layer; did you mean 'conv_1'"):
        growstage.preload(_net(), {"a": {"filename": path, "prefix": "conv1"}})


def test_the_ignore_prefix_excludes_exactly_the_layer_meant(saved):
    old, path = saved
    new = _net()
    before = _values(new)
    rep = growstage.preload(new, {"a": {"filename": path, "ignore_params_prefixes": ["ff_2/"]}})
    assert rep.counts() == {"copied": 6, "kept-init": 2, "ignored": 2}  # ff_2 left as it was
    assert np.array_equal(new.get_layer("ff_2").kernel.numpy(), before[new.get_layer("ff_2").kernel.path])
    assert np.array_equal(new.get_layer("lin_1").kernel.numpy(), old.get_layer("lin_1").kernel.numpy())


def test_a_call_whose_filters_load_nothing_names_the_filter(saved):
    _, path = saved
    cfg = {"a": {"filename": path, "init_for_train": True}}
    with pytest.raises(GrowstageError, match="'a' have init_for_train=True.*training=True"):
        growstage.preload(_net(), cfg)
    with pytest.raises(GrowstageError, match="init_for_train=False.*training=False"):
        growstage.preload(_net(), {"a": {"filename": path}}, training=True)
    # resuming=True names the filter itself: skipping is what was asked for
    assert growstage.preload(_net(), cfg, training=True, resuming=True).rows == []
    every = [f"{l}/{p}" for l in ("conv_1", "conv_2", "ff_2", "lin_1") for p in ("kernel", "bias")]
    with pytest.raises(PlanError, match="'a' loads nothing.*ignore_params/ignore_params_prefixes exclude 8"):
        growstage.preload(_net(), {"a": {"filename": path, "ignore_params": every}})


def test_only_loads_named_layers_and_reports_the_rest_as_ignored(saved, tmp_path):
    old, path = saved
    new = _net()
    before = _values(new)
    rep = growstage.preload(new, {"convs": {"filename": path, "only": ["conv_1", "conv_2"]}})
    assert rep.counts() == {"copied": 4, "kept-init": 4, "ignored": 4}
    assert {r.layer for r in rep.rows if r.reason == "not in only=: untouched"} == {"ff_2", "lin_1"}
    assert "new layer" not in rep.table()
    for lname in ("conv_1", "conv_2"):
        assert np.array_equal(new.get_layer(lname).kernel.numpy(), old.get_layer(lname).kernel.numpy())
    for lname in ("ff_2", "lin_1"):
        assert np.array_equal(new.get_layer(lname).kernel.numpy(), before[new.get_layer(lname).kernel.path])


def test_one_bare_name_is_one_name_and_a_passed_reader_stays_open(saved):
    old, path = saved
    new = _net()
    before = _values(new)
    reader = growstage.open_checkpoint(path)
    rep = growstage.preload(new, {"a": {"filename": reader, "only": "conv_2", "ignore_params": "conv_2/bias"}})
    assert {(r.layer, r.param) for r in rep.rows if r.action == "copied"} == {("conv_2", "kernel")}
    assert np.array_equal(new.get_layer("conv_2").kernel.numpy(), old.get_layer("conv_2").kernel.numpy())
    for v in new.variables:
        if not v.path.endswith("conv_2/kernel"):
            assert np.array_equal(v.numpy(), before[v.path]), v.path
    assert np.array_equal(reader.read("conv_1/kernel"), old.get_layer("conv_1").kernel.numpy())  # still open
    reader.close()
