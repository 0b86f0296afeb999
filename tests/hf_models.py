"""Tiny random Hugging Face models saved locally in several shards (no download), for the HF tests."""
import os

import numpy as np

SIZES = dict(vocab=64, hidden=32, layers=2, heads=2, positions=16)


def gpt2(n_layer=2, n_embd=32, n_head=2, seed=0):
    import transformers
    return transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)


def llama(tie=True, layers=2, hidden=32, heads=4, kv=2, inter=48, eps=1e-6):
    import transformers
    return transformers.LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=inter,
                                    num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                    tie_word_embeddings=tie, rms_norm_eps=eps, max_position_embeddings=64,
                                    bos_token_id=0, eos_token_id=0, pad_token_id=None)


def gemma(layers=2):
    import transformers
    return transformers.GemmaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                    max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=None)


def bert(layers=2):
    import transformers
    return transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                                   intermediate_size=48, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0, pad_token_id=0)


def save(config, path, seed=0, shard="8KB", cls=None):
    """A model of ``config`` with torch seed ``seed``, saved in shards of ``shard``; returns the model."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cls = cls or (transformers.BertModel if config.model_type == "bert" else transformers.AutoModelForCausalLM)
    model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    with torch.no_grad():  # norms start at 1 / 0 in HF: random ones show a swapped gamma/beta
        for name, p in model.named_parameters():
            if "norm" in name.lower():
                p.add_(torch.randn_like(p) * 0.1)
    model.eval().save_pretrained(path, max_shard_size=shard)
    return model


def hf_logits(model, ids):
    import torch
    with torch.no_grad():
        out = model(torch.tensor(ids))
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


def keras_logits(task_or_backbone, ids):
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    if "segment_ids" in [i.name for i in getattr(task_or_backbone, "inputs", [])]:
        x["segment_ids"] = np.zeros_like(ids)
    out = task_or_backbone(x)
    out = out["sequence_output"] if isinstance(out, dict) else out
    import keras
    return keras.ops.convert_to_numpy(out)


def n_shards(path):
    return sum(f.endswith(".safetensors") for f in os.listdir(path))
