"""Issue 28, items 1-2: under keras.distribution (JAX, a (2, 4) mesh of forced host devices) rebuild,
transfer and transfer_optimizer compute every new value on the devices, laid out as the target's
layout asks, and read nothing to the host; the values equal the single-device result (deterministic
fills bit for bit; init-blocks from the same distribution), heads and gate blocks cut by shards.

On CPU ``jax.transfer_guard`` cannot see host reads (a CPU buffer is host memory), so every test
here counts them with ``watch_host_reads`` (every path into host memory passes ``ArrayImpl._value``).
"""
import keras
import numpy as np
import pytest

import growstage
from sharded_models import (attention, fill_values, lstm, mlp, model_parallel, need_mesh, slots_of, spec_of, under,
                            weights_of)



@pytest.fixture(autouse=True)
def _mesh():
    need_mesh()


def _watch():
    from growstage.framework.backends.jax_mesh import watch_host_reads

    return watch_host_reads()


def _grow(build_old, build_new, dist, fill, *, optimizer=True):
    """(new weights, new slots, host reads, new model) of a rebuild with ``fill`` under ``dist`` (None: one device)."""
    with under(dist):
        keras.utils.set_random_seed(1)
        old = fill_values(build_old())
        keras.utils.set_random_seed(2)
        with _watch() as reads:
            new, report = growstage.rebuild(build_new, old, mode="subset", fill=fill)
            if optimizer:
                growstage.transfer_optimizer(old, new, report)
        return weights_of(new), slots_of(new) if optimizer else None, [r for r in reads if r[0]], new


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


FILLS = ["zeros", 0.5, "init", "preserve", "double", "net2net", "clone", "lemon"]


@pytest.mark.parametrize("fill", FILLS)
def test_mlp_growth_on_the_mesh_equals_one_device_bit_for_bit(fill):
    w1, s1, _, _ = _grow(lambda: mlp(16), lambda: mlp(32), None, fill)
    w8, s8, reads, new = _grow(lambda: mlp(16), lambda: mlp(32), model_parallel(), fill)
    assert reads == []
    _assert_same(w1, w8)
    assert all(np.array_equal(a, b) for a, b in zip(s1, s8))
    layer = new.get_layer("h")
    assert spec_of(layer.kernel) == (None, "model") and spec_of(layer.bias) == ("model",)
    slots = {v.path.split("/")[-1]: spec_of(v) for v in new.optimizer.variables}
    assert slots["h_kernel_momentum"] == slots["h_kernel_velocity"] == (None, "model")
    assert slots["out_kernel_velocity"] == ("model", None)


def test_heads_cut_by_shard_boundaries_double_4_to_8():
    # 4 heads over 4 model shards (one each) -> 8 heads (two each): every shard's new heads come from
    # heads another shard held
    w1, s1, _, _ = _grow(lambda: attention(4), lambda: attention(8), None, "double")
    w8, s8, reads, new = _grow(lambda: attention(4), lambda: attention(8), model_parallel(), "double")
    assert reads == []
    _assert_same(w1, w8)
    assert all(np.array_equal(a, b) for a, b in zip(s1, s8))
    assert spec_of(new.get_layer("att")._query_dense.kernel) == (None, "model", None)


@pytest.mark.parametrize("fill", ["preserve", "zeros", "init", "net2net"])
def test_lstm_gate_blocks_cut_by_shards_16_to_24(fill):
    # kernel (5, 4 * 16) over 4 shards: one gate a shard; grown to (5, 4 * 24): gates straddle shards
    w1, s1, _, _ = _grow(lambda: lstm(16), lambda: lstm(24), None, fill)
    w8, s8, reads, new = _grow(lambda: lstm(16), lambda: lstm(24), model_parallel(), fill)
    assert reads == []
    _assert_same(w1, w8)
    assert all(np.array_equal(a, b) for a, b in zip(s1, s8))
    assert spec_of(new.get_layer("rnn").cell.kernel) == (None, "model")


def test_init_blocks_on_the_mesh_copies_exactly_and_draws_from_the_same_distribution():
    wide_old, wide_new = (lambda: mlp(256, compile=False)), (lambda: mlp(1024, compile=False))
    w1, _, _, _ = _grow(wide_old, wide_new, None, "init-blocks", optimizer=False)
    w8, _, reads, new = _grow(wide_old, wide_new, model_parallel(), "init-blocks", optimizer=False)
    assert reads == []
    a, b = w1["h/kernel"], w8["h/kernel"]
    assert np.array_equal(a[:, :256], b[:, :256])  # copied entries: bit-identical
    assert not np.array_equal(a[:, 256:], b[:, 256:])  # new entries: drawn on the devices, other draws
    limit = np.sqrt(6 / (8 + 1024))  # glorot uniform of the full new shape
    for new_entries in (a[:, 256:], b[:, 256:]):
        assert np.abs(new_entries).max() <= limit
        assert abs(new_entries.std() - limit / np.sqrt(3)) < 0.03 * limit  # 6144 draws: ~1% std error
        assert abs(new_entries.mean()) < 0.03 * limit
    assert spec_of(new.get_layer("h").kernel) == (None, "model")


def test_slots_take_their_params_layout_when_the_build_compiles_and_builds_the_optimizer():
    with under(model_parallel()):
        old = fill_values(mlp(16))
        with _watch() as reads:
            new, report = growstage.rebuild(lambda: mlp(32, build_optimizer=True), old, mode="subset",
                                            fill="preserve")
            growstage.transfer_optimizer(old, new, report)
    assert [r for r in reads if r[0]] == []
    slots = {v.path.split("/")[-1]: spec_of(v) for v in new.optimizer.variables}
    assert slots["h_kernel_momentum"] == slots["h_kernel_velocity"] == (None, "model")
    assert slots["h_bias_momentum"] == ("model",)


def test_transfer_into_a_built_model_on_another_mesh_shape_and_its_undo():
    # (2, 4) -> (4, 2): the same 8 devices, other shards; a failing transfer restores on the devices
    with under(model_parallel((2, 4))):
        old = fill_values(mlp(16))
    with under(model_parallel((4, 2))):
        new = mlp(32)
        new.optimizer.build(new.trainable_variables)
        before = weights_of(new)
        with _watch() as reads:
            report = growstage.transfer(old, new, mode="subset", fill="preserve")
            growstage.transfer_optimizer(old, new, report)
        kernel = new.get_layer("h").kernel
        assert kernel.value.sharding.mesh.devices.shape == (4, 2)
        after = weights_of(new)
        with _watch() as undo_reads:
            with pytest.raises(growstage.TransferError):
                growstage.transfer(old, new, mode="subset", fill=lambda shape, dtype: 1 / 0)
    assert [r for r in reads + undo_reads if r[0]] == []
    _assert_same(after, weights_of(new))
    one = mlp(32)
    for v, k in zip(one.weights, before):
        v.assign(before[k])
    growstage.transfer(fill_values(mlp(16)), one, mode="subset", fill="preserve")
    _assert_same(weights_of(one), after)


def test_data_parallel_replicas_grow_on_every_device():
    import jax
    from keras import distribution as kd

    dp = kd.DataParallel(devices=jax.devices())
    w1, s1, _, _ = _grow(lambda: mlp(16), lambda: mlp(32), None, "net2net")
    w8, s8, reads, new = _grow(lambda: mlp(16), lambda: mlp(32), dp, "net2net")
    assert reads == []
    _assert_same(w1, w8)
    assert all(np.array_equal(a, b) for a, b in zip(s1, s8))
    assert len(new.get_layer("h").kernel.value.sharding.device_set) == 8


def test_the_watch_sees_a_host_copy():
    # the check can fail: the values of a sharded model read as numpy pass through the watch
    with under(model_parallel()):
        old = fill_values(mlp(16))
        with _watch() as reads:
            growstage.snapshot(old).values_dict()
    assert len([r for r in reads if r[0]]) == 4 and all(devices == 8 for _, devices in reads)


def test_paired_noise_on_the_mesh_matches_one_device_to_rounding():
    # fill_noise: the same plan; group means by a float32 matmul on either side, so equal to rounding
    def grown(dist):
        with under(dist):
            keras.utils.set_random_seed(1)
            old = fill_values(mlp(16))
            keras.utils.set_random_seed(2)
            with _watch() as reads:
                new, _ = growstage.rebuild(lambda: mlp(32), old, mode="subset", fill="net2net", fill_noise=0.05)
            return weights_of(new), [r for r in reads if r[0]]

    (one, _), (mesh, reads) = grown(None), grown(model_parallel())
    assert reads == []
    for k in one:
        np.testing.assert_allclose(mesh[k], one[k], rtol=1e-6, atol=1e-6, err_msg=k)
    # the noise is there: without it each new row of the consumer equals the old row it copies (halved both)
    kernel = one["out/kernel"]
    assert not any(np.array_equal(a, b) for a in kernel[16:] for b in kernel[:16])
