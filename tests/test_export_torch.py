"""Keras -> torch export checked against real torch.nn modules: load_state_dict(strict=True), then
equal outputs on random inputs.  Tolerance: float32 arithmetic in two frameworks, atol=rtol=2e-5
(observed differences are ~1e-7).  Round trips Keras -> torch -> Keras are bit-identical."""
from __future__ import annotations

import json
import numpy as np
import pytest
import torch
from torch import nn

import keras
import growstage
from growstage.export import TorchLayoutError, from_torch, save_safetensors, to_torch

L = keras.layers
TOL = dict(atol=2e-5, rtol=2e-5)
RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape).astype("f4")


def _model(layer, shape, dtype="float32"):
    x = keras.Input(shape, dtype=dtype)
    return keras.Model(x, layer(x))


def _randomize(model):
    # non-trivial values everywhere (biases, norm stats): zeros would hide a misplaced tensor
    for w in model.weights:
        v = RNG.uniform(0.5, 1.5, w.shape) if "variance" in w.path else RNG.standard_normal(w.shape) * 0.5
        w.assign(v.astype(w.dtype))
    return model


def _check(model, module, x, tin=lambda t: t, tout=lambda y: y):
    module.load_state_dict(to_torch(model, naming={model.layers[-1].name: ""}), strict=True)
    module.eval()
    with torch.no_grad():
        got = tout(module(tin(torch.from_numpy(x)))).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x, training=False)), **TOL)


def _first(out):
    return out[0]


def test_dense():
    _check(_randomize(_model(L.Dense(5, name="d"), (4,))), nn.Linear(4, 5), _x(3, 4))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv(nd):
    size = (7, 6, 5)[:nd]
    k = _model(getattr(L, f"Conv{nd}D")(4, (3, 2, 2)[:nd], name="conv"), (*size, 3))
    t = getattr(nn, f"Conv{nd}d")(3, 4, (3, 2, 2)[:nd])
    # channels-last Keras vs channels-first torch
    _check(_randomize(k), t, _x(2, *size, 3), lambda a: a.permute(0, nd + 1, *range(1, nd + 1)),
           lambda y: y.permute(0, *range(2, nd + 2), 1))


def test_embedding():
    k = _randomize(_model(L.Embedding(11, 4, name="emb"), (5,), "int32"))
    x = RNG.integers(0, 11, (2, 5)).astype("int32")
    _check(k, nn.Embedding(11, 4), x, lambda a: a.long())


def test_layernorm():
    _check(_randomize(_model(L.LayerNormalization(epsilon=1e-5, name="ln"), (3, 6))), nn.LayerNorm(6, eps=1e-5),
           _x(2, 3, 6))


def test_batchnorm():
    k = _randomize(_model(L.BatchNormalization(name="bn"), (5, 6)))
    _check(k, nn.BatchNorm1d(6, eps=1e-3), _x(2, 5, 6), lambda a: a.transpose(1, 2), lambda y: y.transpose(1, 2))
    assert to_torch(k)["bn.num_batches_tracked"].dtype == torch.int64


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_recurrent(kind):
    k = _randomize(_model(getattr(L, kind)(5, return_sequences=True, name="rec"), (6, 3)))
    t = {"LSTM": nn.LSTM, "GRU": nn.GRU, "SimpleRNN": nn.RNN}[kind](3, 5, batch_first=True)
    _check(k, t, _x(2, 6, 3), tout=_first)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional(kind):
    k = _randomize(_model(L.Bidirectional(getattr(L, kind)(4, return_sequences=True), name="bi"), (6, 3)))
    t = getattr(nn, kind)(3, 4, batch_first=True, bidirectional=True)
    _check(k, t, _x(2, 6, 3), tout=_first)


class _SelfAttention(nn.Module):
    def __init__(self, e, h, kdim=None, mask=False):
        super().__init__()
        self.att, self.mask = nn.MultiheadAttention(e, h, batch_first=True, kdim=kdim, vdim=kdim), mask

    def forward(self, q, kv=None):
        kv = q if kv is None else kv
        mask = torch.triu(torch.ones(q.shape[1], q.shape[1], dtype=torch.bool), 1) if self.mask else None
        return self.att(q, kv, kv, need_weights=False, attn_mask=mask)[0]


def test_attention_packed():
    q = keras.Input((5, 8))
    k = _randomize(keras.Model(q, L.MultiHeadAttention(2, 4, name="att")(q, q)))
    t = _SelfAttention(8, 2)
    t.load_state_dict(to_torch(k, naming={"att": "att"}), strict=True)
    x = _x(2, 5, 8)
    with torch.no_grad():
        np.testing.assert_allclose(t(torch.from_numpy(x)).numpy(), keras.ops.convert_to_numpy(k(x)), **TOL)


def test_attention_kdim_and_linear_fallback():
    q, kv = keras.Input((5, 8)), keras.Input((4, 6))
    k = _randomize(keras.Model([q, kv], L.MultiHeadAttention(2, 4, name="att")(q, kv)))
    sd = to_torch(k)
    assert {"att.q_proj_weight", "att.k_proj_weight", "att.in_proj_bias"} <= set(sd)
    t = _SelfAttention(8, 2, kdim=6)
    t.load_state_dict(sd, strict=True)
    xq, xkv = _x(2, 5, 8), _x(2, 4, 6)
    with torch.no_grad():
        got = t(torch.from_numpy(xq), torch.from_numpy(xkv)).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(k([xq, xkv])), **TOL)
    odd = _randomize(keras.Model(q, L.MultiHeadAttention(2, 3, name="att")(q, q)))  # 2*3 != 8
    state, report = growstage.export.export_state_dict(odd)
    assert state["att.q_proj.weight"].shape == (6, 8) and any("no nn.MultiheadAttention" in n for n in report.notes)
    _roundtrip(odd, lambda: keras.Model(q, L.MultiHeadAttention(2, 3, name="att")(q, q)))


def _roundtrip(model, build):
    fresh = build()
    report = from_torch(to_torch(model), fresh)
    assert all(r.action == "copied" for r in report.rows)
    for a, b in zip(model.weights, fresh.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path


def _everything():
    x = keras.Input((6, 4))
    h = L.Dense(6, name="proj")(x)
    h = L.Conv1D(6, 3, padding="same", name="conv")(h)
    h = L.LayerNormalization(name="ln")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = L.LSTM(4, return_sequences=True, name="enc_lstm")(h)
    h = L.GRU(4, return_sequences=True, name="enc_gru")(h)
    h = L.SimpleRNN(4, return_sequences=True, name="enc_rnn")(h)
    h = L.Bidirectional(L.LSTM(3, return_sequences=True), name="blstm")(h)
    h = L.MultiHeadAttention(2, 3, name="att")(h, h)
    return keras.Model(x, h)


def test_roundtrip_bit_identical(tmp_path):
    src = _randomize(_everything())
    _roundtrip(src, _everything)
    path = tmp_path / "m.safetensors"
    report = save_safetensors(src, path)
    assert report.row("proj.weight").reason == "transposed"
    fresh = _everything()
    from_torch(str(path), fresh)
    assert all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)) for a, b in zip(src.weights, fresh.weights))


def test_from_torch_strict_and_unchanged():
    src, fresh = _randomize(_everything()), _everything()
    before = [np.array(w) for w in fresh.weights]
    sd = to_torch(src)
    extra = {**sd, "head.weight": torch.zeros(2, 2)}
    with pytest.raises(growstage.PlanError, match="head.weight"):
        from_torch(extra, fresh)
    missing = {k: v for k, v in sd.items() if k != "enc_gru.bias_hh_l0"}
    with pytest.raises(growstage.PlanError, match="bias_hh_l0"):
        from_torch(missing, fresh)
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(b)) for a, b in zip(before, fresh.weights))


def test_errors_name_the_problem():
    m = _everything()
    with pytest.raises(growstage.UnknownNameError, match="'proj'"):
        to_torch(m, naming={"porj": "p"})
    gru = _model(L.GRU(3, reset_after=False, name="g"), (4, 2))
    with pytest.raises(TorchLayoutError, match="reset_after=True"):
        to_torch(gru)
    with pytest.raises(growstage.PlanError, match="reset_after=True"):
        from_torch({"g.weight_ih_l0": torch.zeros(9, 2), "g.weight_hh_l0": torch.zeros(9, 3),
                    "g.bias_ih_l0": torch.zeros(9), "g.bias_hh_l0": torch.zeros(9)}, gru)
    with pytest.raises(growstage.GrowstageError, match="float32"):
        from_torch({"g.weight_ih_l0": torch.zeros(9, 2, dtype=torch.bfloat16)}, gru)
    with pytest.raises(growstage.UnknownNameError, match="'Dense'"):
        to_torch({"out": {"kernel": np.ones((3, 2), "f4")}}, types={"out": "Dence"})
    odd = {"blk": {"weird": np.ones(3, "f4")}}
    with pytest.raises(TorchLayoutError, match="blk"):
        to_torch(odd)
    assert list(to_torch(odd, unknown="raw", tensors=False)) == ["blk.weird"]


class _GPT(nn.Module):
    """GPT-2 shaped: token + position embeddings, one pre-LN block, final LayerNorm, LM head."""

    def __init__(self, v, t, e, h):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(v, e), nn.Embedding(t, e)
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(e), _SelfAttention(e, h, mask=True), nn.LayerNorm(e)
        self.c_fc, self.c_proj = nn.Linear(e, 4 * e), nn.Linear(4 * e, e)
        self.ln_f, self.lm_head = nn.LayerNorm(e), nn.Linear(e, v, bias=False)

    def forward(self, ids):
        h = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        h = h + self.attn(self.ln_1(h))
        h = h + self.c_proj(nn.functional.gelu(self.c_fc(self.ln_2(h))))
        return self.lm_head(self.ln_f(h))


def _keras_gpt(v, t, e, h):
    ids, positions = keras.Input((t,), dtype="int32"), keras.Input((t,), dtype="int32")
    pos = L.Embedding(t, e, name="pos_emb")(positions)
    x = L.Embedding(v, e, name="tok_emb")(ids) + pos
    n = L.LayerNormalization(epsilon=1e-5, name="ln1")(x)
    x = x + L.MultiHeadAttention(h, e // h, name="attn")(n, n, use_causal_mask=True)
    n = L.LayerNormalization(epsilon=1e-5, name="ln2")(x)
    x = x + L.Dense(e, name="mlp_out")(L.Dense(4 * e, activation="gelu", name="mlp_in")(n))
    x = L.LayerNormalization(epsilon=1e-5, name="ln_f")(x)
    return keras.Model([ids, positions], L.Dense(v, use_bias=False, name="lm_head")(x))


def test_gpt2_block_equal_logits():
    v, t, e, h = 13, 6, 8, 2
    k = _randomize(_keras_gpt(v, t, e, h))
    naming = {"tok_emb": "wte", "pos_emb": "wpe", "ln1": "ln_1", "attn": "attn.att", "ln2": "ln_2",
              "mlp_in": "c_fc", "mlp_out": "c_proj"}
    g = _GPT(v, t, e, h)
    g.load_state_dict(to_torch(k, naming=naming), strict=True)
    ids = RNG.integers(0, v, (2, t)).astype("int32")
    with torch.no_grad():
        logits = g(torch.from_numpy(ids).long()).numpy()
    positions = np.broadcast_to(np.arange(t, dtype="int32"), ids.shape)
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(k([ids, positions])), **TOL)


def test_cli_export(tmp_path, capsys):
    from growstage.cli import main

    src = tmp_path / "m.keras"
    _randomize(_everything()).save(src)
    out = tmp_path / "m.safetensors"
    assert main(["export", str(src), str(out), "--to", "torch"]) == 0
    text = capsys.readouterr().out
    assert "gates z,r,h -> r,z,n" in text and "inferred from param names" in text
    from safetensors.numpy import load_file
    assert load_file(out)["proj.weight"].shape == (6, 4)
    assert main(["export", str(src), str(out), "--to", "torch", "--naming", "prj=x"]) == 2
    assert "did you mean 'proj'" in capsys.readouterr().err


def _stacked():
    x = keras.Input((5, 3))
    h = L.LSTM(4, return_sequences=True, name="lstm1")(x)
    return keras.Model(x, L.LSTM(4, return_sequences=True, name="lstm2")(h))


def test_stacked_lstm_into_one_module():
    k = _randomize(_stacked())
    naming = {"lstm1": "rnn", "lstm2": "rnn@1"}
    holder = nn.Module()
    holder.rnn = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    holder.load_state_dict(to_torch(k, naming=naming), strict=True)
    x = _x(2, 5, 3)
    with torch.no_grad():
        np.testing.assert_allclose(holder.rnn(torch.from_numpy(x))[0].numpy(), keras.ops.convert_to_numpy(k(x)), **TOL)
    fresh = _stacked()
    from_torch(holder, fresh, naming=naming)  # a module works as well as its state_dict
    assert all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)) for a, b in zip(k.weights, fresh.weights))


def test_numpy_without_torch(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    sd = to_torch({"out": {"kernel": np.ones((3, 2), "f4")}}, types={"out": "Dense"})
    assert isinstance(sd["out.weight"], np.ndarray)
    with pytest.raises(growstage.GrowstageError, match="needs torch"):
        to_torch({"out": {"kernel": np.ones((3, 2), "f4")}}, types={"out": "Dense"}, tensors=True)


def test_from_torch_names_a_file_it_cannot_read(tmp_path):
    m = _everything()
    with pytest.raises(growstage.StoreError, match="missing.safetensors"):
        from_torch(str(tmp_path / "missing.safetensors"), m)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(growstage.StoreError, match="bad.safetensors"):
        from_torch(str(bad), m)


def test_save_safetensors_guards_its_output_and_options(tmp_path, capsys):
    from growstage.cli import main

    m = _everything()
    src = tmp_path / "m.h5"
    growstage.save(growstage.snapshot(m), str(src))
    with pytest.raises(growstage.StoreError, match="source itself"):
        save_safetensors(str(src), src)
    assert growstage.load(str(src)).layers  # untouched
    with pytest.raises(growstage.StoreError, match="folder"):
        save_safetensors(m, tmp_path)
    with pytest.raises(growstage.StoreError, match="does not exist"):
        save_safetensors(m, tmp_path / "nodir" / "x.safetensors")
    with pytest.raises(growstage.GrowstageError, match="did you mean 'naming'"):
        save_safetensors(m, tmp_path / "x.safetensors", namings={})
    with pytest.raises(growstage.GrowstageError, match="naming= takes a dict"):
        to_torch(m, naming=["proj"])
    assert main(["export", str(src), str(tmp_path / "y.safetensors"), "--to", "torch", "--json",
                 "--allow-large"]) == 0
    json.loads(capsys.readouterr().out)  # stdout is JSON only


def test_automatic_layer_names_export_as_they_are_with_a_note():
    """issue 27, item 8: the export's names are only the state_dict's keys."""
    from growstage.export import export_state_dict

    x = keras.Input((6, 3))
    gru = L.GRU(5, return_sequences=True)  # an automatic name: gru, gru_1, ... (build order)
    k = _randomize(keras.Model(x, gru(x)))
    state, report = export_state_dict(k)
    assert sorted(state) == sorted(f"{gru.name}.{n}" for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                               "bias_hh_l0"))
    assert any(f"automatic layer names {gru.name}" in n and "order Keras built" in n for n in report.notes)
    t = nn.GRU(3, 5, batch_first=True)
    _check(k, t, _x(2, 6, 3), tout=_first)  # the same values as a named layer's
    _, named = export_state_dict(k, naming={gru.name: "rnn"})
    assert not any("automatic" in n for n in named.notes)
