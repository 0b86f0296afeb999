"""Issue 2 references: BLSTM width growth/shrink, depth growth, MultiHeadAttention heads and key_dim."""
import keras
import numpy as np
import pytest

import growstage
from conftest import L, build_blstm, expected_blockwise, values


def _split(key, width, n_in=5):
    """Independent statement of each param's blocks in build_blstm (not from growstage)."""
    layer, path = key
    if layer == "out":
        return [[width, width], [7]] if path.endswith("kernel") else [[7]]
    inp = [n_in] if layer == "blstm1" else [width, width]
    if path.endswith("recurrent_kernel"):
        return [[width], [width] * 4]
    if path.endswith("kernel"):
        return [inp, [width] * 4]
    return [[width] * 4]


def _inner(path):
    # forward_lstm_3/lstm_cell/kernel -> ("forward", "kernel"): the inner names change per build.
    side = path.split("/")[0].split("_")[0]
    return side, path.rsplit("/", 1)[1]


def _by_inner(vals):
    return {(layer, _inner(path) if "/" in path else path): (path, v) for (layer, path), v in vals.items()}


@pytest.mark.parametrize("old_w,new_w", [(4, 6), (6, 4)])
def test_blstm_width_subset_is_exact_per_gate_and_half(old_w, new_w):
    old = build_blstm(old_w, seed=1)
    new = build_blstm(new_w, seed=2)
    old_vals, init_vals = _by_inner(values(old)), _by_inner(values(new))
    report = growstage.transfer(growstage.snapshot(old), new, mode="subset")
    got = _by_inner(values(new))
    assert set(got) == set(old_vals) and len(got) == 14
    for key, (path, new_v) in got.items():
        old_path, old_v = old_vals[key]
        init_v = init_vals[key][1]
        exp, covered = expected_blockwise(old_v, init_v, _split((key[0], old_path), old_w), _split((key[0], path), new_w))
        assert np.array_equal(new_v, exp), key
        if old_w < new_w:
            assert covered.sum() == old_v.size  # every old entry landed somewhere
    action = "padded" if new_w > old_w else "sliced"
    assert report.row("blstm2/forward_layer/cell/kernel").action == action
    assert report.row("blstm2/forward_layer/cell/kernel").new_split == [[new_w, new_w], [new_w] * 4]
    assert report.row("out/bias").action == "copied"


def test_depth_two_to_three_keeps_shared_layers_and_leaves_new_layer_untouched():
    old = build_blstm(4, depth=2, seed=1)
    new = build_blstm(4, depth=3, seed=2)
    init = _by_inner(values(new))
    with pytest.raises(growstage.PlanError, match="blstm3"):
        growstage.transfer(old, new)
    after_fail = _by_inner(values(new))
    assert all(np.array_equal(after_fail[k][1], init[k][1]) for k in init)
    report = growstage.transfer(old, new, ignore_missing=True)
    got, src = _by_inner(values(new)), _by_inner(values(old))
    for key, (_, v) in got.items():
        if key[0] == "blstm3":
            assert np.array_equal(v, init[key][1])
        else:
            assert np.array_equal(v, src[key][1]), key
    assert report.counts() == {"copied": 14, "kept-init": 6}
    row = report.row("blstm3/forward_layer/cell/kernel")
    assert row.action == "kept-init" and "ignore_missing" in row.reason
    assert "blstm3/backward_layer/cell/bias" in report.table(collapse_layers=False)


def test_same_architecture_equals_keras_load_weights(tmp_path):
    a, b, c = build_blstm(4, seed=1), build_blstm(4, seed=2), build_blstm(4, seed=3)
    a.save_weights(tmp_path / "a.weights.h5")
    b.load_weights(tmp_path / "a.weights.h5")
    growstage.transfer(a, c)
    for wb, wc in zip(b.weights, c.weights):
        assert np.array_equal(wb.numpy(), wc.numpy())
    x = np.random.default_rng(0).normal(size=(2, 5, 5)).astype("f4")
    assert np.array_equal(keras.ops.convert_to_numpy(a(x)), keras.ops.convert_to_numpy(c(x)))


def _mha_model(heads, key_dim, seed):
    keras.utils.set_random_seed(seed)
    x = keras.Input((6, 16), name="seq")
    y = L.MultiHeadAttention(num_heads=heads, key_dim=key_dim, name="att")(x, x)
    return keras.Model(x, L.Dense(3, name="out")(y))


@pytest.mark.parametrize("old_hk,new_hk", [((2, 8), (4, 8)), ((2, 8), (2, 16)), ((2, 8), (4, 16)), ((4, 16), (2, 8))])
def test_multihead_attention_heads_and_key_dim(old_hk, new_hk):
    old, new = _mha_model(*old_hk, seed=1), _mha_model(*new_hk, seed=2)
    o, init = growstage.snapshot(old), growstage.snapshot(new)
    growstage.transfer(o, new, mode="subset")
    got = growstage.snapshot(new)
    h1, k1 = new_hk
    for pname, prm in got["att"].items():
        ov, iv = o["att"][pname].read(), init["att"][pname].read()
        nv = prm.read()
        lead = tuple(slice(0, min(a, b)) for a, b in zip(ov.shape, nv.shape))
        assert np.array_equal(nv[lead], ov[lead]), pname
        mask = np.ones(nv.shape, bool)
        mask[lead] = False
        assert np.array_equal(nv[mask], iv[mask]), pname
    assert got["att"]["query/kernel"].shape == (16, h1, k1)
    assert got["att"]["attention_output/kernel"].split == [[h1], [k1], [16]]


def test_dense_reading_concatenate_gets_split_of_sources():
    def build(w, seed):
        keras.utils.set_random_seed(seed)
        x = keras.Input((None, 3))
        fw = L.LSTM(w, return_sequences=True, name="fw")(x)
        bw = L.LSTM(w, return_sequences=True, go_backwards=True, name="bw")(x)
        h = L.Concatenate(name="cat")([fw, bw])
        h = L.LayerNormalization(name="ln")(L.Dropout(0.1, name="drop")(h))
        return keras.Model(x, L.Dense(2, name="out")(h))
    old, new = build(3, 1), build(5, 2)
    snap = growstage.snapshot(old)
    assert snap["out"]["kernel"].split == [[3, 3], [2]]
    assert snap["ln"]["gamma"].split == [[3, 3]]
    init = growstage.snapshot(new)
    growstage.transfer(snap, new, mode="subset")
    k = growstage.snapshot(new)["out"]["kernel"].read()
    exp, _ = expected_blockwise(snap["out"]["kernel"].read(), init["out"]["kernel"].read(), [[3, 3], [2]], [[5, 5], [2]])
    assert np.array_equal(k, exp)


def test_rebuild_with_deferred_initializers_equals_build_then_transfer():
    import growstage
    from conftest import build_blstm
    small = build_blstm(4, depth=2, seed=1)
    opts = dict(mode="subset", allow_new_layers=True)
    reference = build_blstm(6, depth=3, seed=7)
    growstage.transfer(small, reference, **opts)
    fast, report = growstage.rebuild(lambda: build_blstm(6, depth=3, seed=7), small, **opts)
    assert report.row("blstm3/forward_layer/cell/kernel").action == "kept-init"
    for a, b in zip(reference.weights, fast.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    # a failure leaves a freshly built model: every variable holds its init
    fresh = build_blstm(6, depth=3, seed=7)

    def boom(layer, values, *, context):
        raise RuntimeError("importer failed")
    import pytest
    failed_model = []
    with pytest.raises(growstage.TransferError):
        growstage.rebuild(lambda: failed_model.append(build_blstm(6, depth=3, seed=7)) or failed_model[0], small,
                          custom_param_importer={"out": boom}, **opts)
    for a, b in zip(fresh.weights, failed_model[0].weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.path


def test_shared_buffers_never_leak_writes_between_models():
    """A copied param shares the source tensor's buffer until written: training either model
    must not change the other, nor the snapshot."""
    import growstage
    from conftest import build_blstm
    a = build_blstm(3, depth=1, seed=1)
    snap = growstage.snapshot(a)
    kept = {k: np.array(v) for k, v in snap.values_dict()["out"].items()}
    b, _ = growstage.rebuild(lambda: build_blstm(3, depth=1, seed=2), snap)
    a_before = [w.numpy().copy() for w in a.weights]
    x = np.ones((2, 4, 5), "f4")
    b.compile("sgd", "mse")
    b.fit(x, np.ones((2, 4, 7), "f4"), verbose=0)
    assert not np.array_equal(b.get_layer("out").kernel.numpy(), kept["kernel"])
    assert all(np.array_equal(p, w.numpy()) for p, w in zip(a_before, a.weights))
    assert np.array_equal(snap["out"]["kernel"].read(), kept["kernel"])
    a.get_layer("out").kernel.assign(np.zeros_like(kept["kernel"]))
    assert np.array_equal(snap["out"]["kernel"].read(), kept["kernel"])
