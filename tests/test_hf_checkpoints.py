"""Hugging Face folders (sharded safetensors) as sources, against keras_hub's own loader and transformers:
tiny random models built and saved locally in several shards (nothing downloaded)."""
import json
import os
import shutil

import keras
import numpy as np
import pytest

import growstage
import hf_models as H

keras_hub = pytest.importorskip("keras_hub")
transformers = pytest.importorskip("transformers")
IDS = np.array([[1, 5, 9, 3, 7, 2, 11, 4]])


def _tol(ref):
    return 1e-4 * max(1.0, float(np.abs(ref).max()))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    bert_cfg = H.bert()
    bert_cfg.hidden_act = "gelu_new"  # keras_hub's BERT gelu: outputs comparable
    made = {}
    for name, cfg in (("gpt2", H.gpt2()), ("llama", H.llama()), ("gemma", H.gemma()), ("bert", bert_cfg)):
        made[name] = (str(root / name), H.save(cfg, root / name))
    return made


BACKBONES = {"gpt2": "GPT2Backbone", "llama": "LlamaBackbone", "gemma": "GemmaBackbone", "bert": "BertBackbone"}


def _same_size_target(family, folder):
    """A fresh backbone of the folder's sizes, built by keras_hub's own config conversion."""
    ref = getattr(keras_hub.models, BACKBONES[family]).from_preset(folder)
    cfg = ref.get_config()
    cfg.pop("name", None)
    if family == "llama":  # LlamaBackbone's get_config leaves tying out
        cfg["tie_word_embeddings"] = ref.token_embedding.tie_weights
    return ref, getattr(keras_hub.models, BACKBONES[family]).from_config(cfg)


def test_open_checkpoint_lists_hf_names_and_reads_lazily(folders, monkeypatch):
    folder, model = folders["gpt2"]
    assert H.n_shards(folder) > 2
    import safetensors

    opened = []
    real = safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda p, **k: opened.append(p) or real(p, **k))
    with growstage.open_checkpoint(folder) as r:
        state = {k: v.numpy() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        assert r.format == "hf" and set(r) == set(state)
        assert opened == []  # listing reads headers only
        assert np.array_equal(r.read("transformer.h.1.mlp.c_fc.weight"), state["transformer.h.1.mlp.c_fc.weight"])
        assert len(opened) == 1
        assert np.array_equal(r.read("transformer.h.0.attn.c_attn.weight", np.s_[:, 32:64]),
                              state["transformer.h.0.attn.c_attn.weight"][:, 32:64])
    with growstage.open_checkpoint(folder, preset="hf-gpt2") as r:
        e = r["transformer_layer_0/self_attention/key/kernel"]
        assert e.shape == (32, 2, 16) and e.source.startswith("transformer.h.0.attn.c_attn.weight[:, 32:64]")


@pytest.mark.parametrize("family", list(BACKBONES))
def test_same_size_load_equals_keras_hub_from_preset(folders, family):
    folder, model = folders[family]
    ref, target = _same_size_target(family, folder)
    rep = growstage.transfer(folder, target)
    got = {v.path: keras.ops.convert_to_numpy(v) for v in target.weights}
    want = {v.path: keras.ops.convert_to_numpy(v) for v in ref.weights}
    assert set(got) == set(want)
    bad = [k for k in want if not np.array_equal(got[k], want[k])]
    assert bad == []
    assert all(r.source_name for r in rep.rows if r.source is not None)  # every row names HF's tensor
    if family == "bert":
        ref_out = H.hf_logits(model, IDS)
        np.testing.assert_allclose(H.keras_logits(target, IDS), ref_out, atol=_tol(ref_out))
    else:
        task = getattr(keras_hub.models, BACKBONES[family].replace("Backbone", "CausalLM"))(backbone=target,
                                                                                            preprocessor=None)
        ref_out = H.hf_logits(model, IDS)
        np.testing.assert_allclose(H.keras_logits(task, IDS), ref_out, atol=_tol(ref_out))


def test_config_differences_are_noted_and_refused_in_exact_mode(tmp_path):
    folder = str(tmp_path / "llama")
    H.save(H.llama(eps=1e-5), folder)
    target = keras_hub.models.LlamaBackbone(vocabulary_size=64, num_layers=2, num_query_heads=4,
                                            num_key_value_heads=2, hidden_dim=32, intermediate_dim=48,
                                            tie_word_embeddings=True)
    with pytest.raises(growstage.PlanError, match="rms_norm_eps=1e-05 but the target's layer_norm_epsilon=1e-06"):
        growstage.plan(folder, target)
    before = [keras.ops.convert_to_numpy(v) for v in target.weights]
    p = growstage.plan(folder, target, mode="subset")
    assert any("rms_norm_eps" in n for n in p.notes)
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(v)) for a, v in zip(before, target.weights))


def test_bert_exact_gelu_is_a_difference(tmp_path):
    folder = str(tmp_path / "bert")
    H.save(H.bert(), folder)
    target = keras_hub.models.BertBackbone.from_preset(folder)
    with pytest.raises(growstage.PlanError, match="exact gelu"):
        growstage.plan(folder, target)


def test_unknown_model_type_lists_presets(folders, tmp_path):
    folder = str(tmp_path / "t5")
    shutil.copytree(folders["gpt2"][0], folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    cfg["model_type"] = "t5"
    json.dump(cfg, open(os.path.join(folder, "config.json"), "w"))
    target = keras_hub.models.GPT2Backbone(vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=32,
                                           intermediate_dim=128, max_sequence_length=16)
    with pytest.raises(growstage.GrowstageError, match="model_type 't5' has no growstage preset; known: .*hf-gpt2"):
        growstage.transfer(folder, target)
    growstage.transfer(folder, target, preset="hf-gpt2")  # the user names the layout
    with pytest.raises(growstage.GrowstageError, match="did you mean 'hf-gpt2'"):
        growstage.transfer(folder, target, preset="hf-gtp2")


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma"])
def test_export_round_trip_through_transformers(folders, tmp_path, family):
    folder, model = folders[family]
    ref, target = _same_size_target(family, folder)
    growstage.transfer(folder, target)
    out = growstage.export_hf(target, tmp_path / "out", max_shard_size="8KB")
    assert H.n_shards(tmp_path / "out") > 2 and "model.safetensors.index.json" in out["files"]
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    task = getattr(keras_hub.models, BACKBONES[family].replace("Backbone", "CausalLM"))(backbone=target,
                                                                                        preprocessor=None)
    want = H.keras_logits(task, IDS)
    np.testing.assert_allclose(H.hf_logits(back, IDS), want, atol=_tol(want))
    sd, orig = back.state_dict(), model.state_dict()
    assert all(np.array_equal(sd[k].numpy(), orig[k].numpy()) for k in orig)  # the same tensors, exactly


def test_export_is_atomic_and_refuses_an_existing_folder(folders, tmp_path, monkeypatch):
    target = keras_hub.models.GPT2Backbone.from_preset(folders["gpt2"][0])
    (tmp_path / "there").mkdir()
    with pytest.raises(growstage.StoreError, match="exists already"):
        growstage.export_hf(target, tmp_path / "there")
    import safetensors.numpy as stn

    calls = []
    real = stn.save_file

    def flaky(tensors, path, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(tensors, path, **kw)
    monkeypatch.setattr(stn, "save_file", flaky)
    with pytest.raises(growstage.StoreError, match="No space left"):
        growstage.export_hf(target, tmp_path / "out", max_shard_size="8KB")
    assert sorted(os.listdir(tmp_path)) == ["there"]  # no half folder, no temporary left behind


def test_max_shard_size_takes_ints_and_strings():
    from growstage.interop.hf.export import parse_size

    assert (parse_size(4096), parse_size("8KB"), parse_size("2GB"), parse_size("1MiB")) == \
           (4096, 8000, 2 * 10**9, 2**20)
    for bad in ("8XB", "", 0, -5, "GB", True):
        with pytest.raises(growstage.GrowstageError, match="max_shard_size"):
            parse_size(bad)


def test_cli_inspect_and_export(folders, tmp_path, capsys):
    from growstage.cli import main

    folder, _ = folders["gpt2"]
    assert main(["inspect", folder, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert "transformer.h.0.attn.c_attn.weight" in json.dumps(listed)
    bb = keras_hub.models.GPT2Backbone.from_preset(folder)
    model = keras_hub.models.GPT2CausalLM(backbone=bb, preprocessor=None)
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "hf"), "--to", "hf", "--preset", "hf-gpt2",
                 "--max-shard-size", "8KB"]) == 0
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    want = H.keras_logits(model, IDS)
    np.testing.assert_allclose(H.hf_logits(back, IDS), want, atol=_tol(want))
    # the documented short form: preset from the backbone, --max-shard-size optional (2GB: one file)
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "hf1"), "--to", "hf"]) == 0
    assert H.n_shards(tmp_path / "hf1") == 1


def _gpt2_backbone(layers=2, hidden=32, heads=2):
    return keras_hub.models.GPT2Backbone(vocabulary_size=64, num_layers=layers, num_heads=heads, hidden_dim=hidden,
                                         intermediate_dim=4 * hidden, max_sequence_length=16, dropout=0.0)


def test_rebuild_and_preload_take_the_folder(folders):
    folder, _ = folders["gpt2"]
    ref = keras_hub.models.GPT2Backbone.from_preset(folder)
    want = {v.path: keras.ops.convert_to_numpy(v) for v in ref.weights}
    big, rep = growstage.rebuild(lambda: _gpt2_backbone(layers=4), folder, mode="subset", allow_new_layers=True)
    assert rep.row("transformer_layer_1/self_attention/query/kernel").source_name.startswith(
        "transformer.h.1.attn.c_attn.weight[:, 0:32]")
    got = {v.path: keras.ops.convert_to_numpy(v) for v in big.weights}
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert any(k.startswith("transformer_layer_3/") for k in got)
    same = _gpt2_backbone()
    rep = growstage.preload(same, {"hf": {"filename": folder, "preset": "hf-gpt2"}})
    assert rep.counts() == {"copied": len(want)}
    got = {v.path: keras.ops.convert_to_numpy(v) for v in same.weights}
    assert all(np.array_equal(got[k], want[k]) for k in want)


def _gpt2_task(layers=2, hidden=32, heads=2):
    return keras_hub.models.GPT2CausalLM(backbone=_gpt2_backbone(layers, hidden, heads), preprocessor=None)


@pytest.mark.parametrize("how", ["depth", "width", "rebuild"])
def test_grow_on_load_keeps_the_hf_models_logits(folders, how):
    folder, model = folders["gpt2"]
    ref = H.hf_logits(model, IDS)
    if how == "depth":
        task = _gpt2_task(layers=4)
        rep = growstage.transfer(folder, task, preset="hf-gpt2", mode="subset", fill="preserve", allow_new_layers=True)
        assert rep.counts()["zeroed"] == 8  # attention output and FFN down-projection of the two new blocks
    elif how == "width":
        task = _gpt2_task(hidden=64, heads=4)
        rep = growstage.transfer(folder, task, mode="subset", fill="double")
    else:
        task, rep = growstage.rebuild(lambda: _gpt2_task(layers=4, hidden=64, heads=4), folder, mode="subset",
                                      fill="double", fills={"transformer_layer_2": "preserve",
                                                            "transformer_layer_3": "preserve"},
                                      allow_new_layers=True)
    np.testing.assert_allclose(H.keras_logits(task, IDS), ref, atol=_tol(ref))
    from_file = [r for r in rep.rows if r.source is not None]
    assert from_file and all(r.source_name.startswith("transformer.") for r in from_file)


def test_a_schedules_first_stage_grows_from_the_folder(folders):
    folder, model = folders["gpt2"]
    ref = H.hf_logits(model, IDS)

    def compile_(m, stage):  # learning rate 0: after the epoch the weights are still those loaded
        m.compile(optimizer=keras.optimizers.SGD(0.0), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    schedule = growstage.Schedule(lambda stage: _gpt2_task(layers=stage.spec), stages=[4])
    x = {"token_ids": IDS, "padding_mask": np.ones_like(IDS)}
    hist = growstage.fit(schedule, x, IDS, epochs=1, compile=compile_, log=None, preload_from_files={
        "gpt2": {"filename": folder, "init_for_train": True, "mode": "subset", "fill": "preserve",
                 "allow_new_layers": True}})
    np.testing.assert_allclose(H.keras_logits(hist.model, IDS), ref, atol=_tol(ref))


def _llama_task(layers=2, scale=1):
    bb = keras_hub.models.LlamaBackbone(vocabulary_size=64, num_layers=layers, num_query_heads=4 * scale,
                                        num_key_value_heads=2 * scale, hidden_dim=32 * scale,
                                        intermediate_dim=48 * scale, tie_word_embeddings=False)
    return keras_hub.models.LlamaCausalLM(backbone=bb, preprocessor=None)


def _gemma_task(layers=2, scale=1):
    bb = keras_hub.models.GemmaBackbone(vocabulary_size=64, num_layers=layers, num_query_heads=2 * scale,
                                        num_key_value_heads=1 * scale, hidden_dim=32 * scale,
                                        intermediate_dim=96 * scale, head_dim=16)
    return keras_hub.models.GemmaCausalLM(backbone=bb, preprocessor=None)


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_llama_untied_and_gemma_grow_on_load(tmp_path, family):
    folder = str(tmp_path / family)
    model = H.save(H.llama(tie=False) if family == "llama" else H.gemma(), folder)
    ref = H.hf_logits(model, IDS)
    build = _llama_task if family == "llama" else _gemma_task
    task, rep = growstage.rebuild(lambda: build(layers=4, scale=2), folder, mode="subset", fill="double",
                                  fills={f"{'transformer_layer' if family == 'llama' else 'decoder_block'}_{i}":
                                         "preserve" for i in (2, 3)}, allow_new_layers=True)
    np.testing.assert_allclose(H.keras_logits(task, IDS), ref, atol=_tol(ref))
    if family == "llama":  # the untied output head: HF's lm_head, transposed
        assert rep.row("token_embedding/reverse_embeddings").source_name == "lm_head.weight.T"


def _grouped_target(family, **kw):
    if family == "llama":  # the folder: 4 query heads in 2 KV groups, head size 8, tied
        b = keras_hub.models.LlamaBackbone(vocabulary_size=64, num_layers=2, num_query_heads=8, num_key_value_heads=4,
                                           hidden_dim=64, intermediate_dim=96, layer_norm_epsilon=1e-6,
                                           tie_word_embeddings=True, dropout=0.0)
        return keras_hub.models.LlamaCausalLM(backbone=b, preprocessor=None)
    b = keras_hub.models.GemmaBackbone(vocabulary_size=64, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                                       head_dim=16, hidden_dim=64, intermediate_dim=192, dropout=0.0)
    return keras_hub.models.GemmaCausalLM(backbone=b, preprocessor=None)


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_width_growth_on_load_keeps_each_query_head_in_its_kv_group(folders, family):
    """Query heads and KV heads doubled straight from the folder: each old query head stays in the group of
    its own KV head (the folder's KV count, not the target's, decides the groups)."""
    folder, model = folders[family]
    ref = H.hf_logits(model, IDS)
    task = _grouped_target(family)
    growstage.transfer(folder, task, mode="subset", fill="double")
    np.testing.assert_allclose(H.keras_logits(task, IDS), ref, atol=_tol(ref))
