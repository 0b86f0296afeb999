"""GPT-2 (``model_type: gpt2``) <-> keras_hub ``GPT2Backbone``; keras_hub's ``convert_gpt2.py`` is the
reference.  HF's Conv1D weights are already ``(in, out)``; the fused ``c_attn`` splits into query, key
and value (thirds of its output axis), each per head; the output head is tied to ``wte``.

Example::

    >>> rs = rules({"n_layer": 1, "n_head": 2, "n_embd": 4})
    >>> r = [r for r in rs if r.keras.endswith("key/kernel")][0]
    >>> r.hf, r.shape((4, 12)), r.origin((4, 12), "transformer.")
    ('h.0.attn.c_attn.weight', (4, 2, 2), 'transformer.h.0.attn.c_attn.weight[:, 4:8] -> (hidden, 2 heads, head_dim)')
"""
from __future__ import annotations

from typing import Any, Mapping

from growstage.io.hf.common import COPY, Rule, bias_heads, conv_heads_in, conv_heads_out, differ

MODEL_TYPES = ("gpt2",)
ANCHOR = "wte.weight"  # finds the prefix: "transformer." in GPT2LMHeadModel's files, "" in GPT2Model's
EXPORT_PREFIX = "transformer."
TOP: tuple[str, ...] = ()
# tensors HF files may hold that are not weights (older files saved the causal mask buffers)
BUFFERS = (".attn.bias", ".attn.masked_bias")


def rules(cfg: Mapping[str, Any]) -> list[Rule]:
    n = int(cfg["n_head"])
    out = [Rule("token_embedding/embeddings", "wte.weight"), Rule("position_embedding/embeddings", "wpe.weight"),
           Rule("layer_norm/gamma", "ln_f.weight"), Rule("layer_norm/beta", "ln_f.bias")]
    for i in range(int(cfg["n_layer"])):
        k, h = f"transformer_layer_{i}/", f"h.{i}."
        for j, qkv in enumerate(("query", "key", "value")):
            out += [Rule(f"{k}self_attention/{qkv}/kernel", f"{h}attn.c_attn.weight", conv_heads_in(n), (1, j, 3)),
                    Rule(f"{k}self_attention/{qkv}/bias", f"{h}attn.c_attn.bias", bias_heads(n), (0, j, 3))]
        out += [Rule(f"{k}self_attention/attention_output/kernel", f"{h}attn.c_proj.weight", conv_heads_out(n)),
                Rule(f"{k}self_attention/attention_output/bias", f"{h}attn.c_proj.bias"),
                Rule(f"{k}self_attention_layer_norm/gamma", f"{h}ln_1.weight"),
                Rule(f"{k}self_attention_layer_norm/beta", f"{h}ln_1.bias"),
                Rule(f"{k}feedforward_layer_norm/gamma", f"{h}ln_2.weight"),
                Rule(f"{k}feedforward_layer_norm/beta", f"{h}ln_2.bias")]
        for keras, hf in (("intermediate", "c_fc"), ("output", "c_proj")):
            out += [Rule(f"{k}feedforward_{keras}_dense/kernel", f"{h}mlp.{hf}.weight", COPY),
                    Rule(f"{k}feedforward_{keras}_dense/bias", f"{h}mlp.{hf}.bias")]
    return out


def differences(cfg: Mapping[str, Any], backbone: Any) -> list[str]:
    """keras_hub's GPT-2 fixes LayerNorm epsilon 1e-5 and the tanh-approximated gelu (HF's ``gelu_new``)."""
    kc = dict(backbone.get_config(), layer_norm_epsilon=1e-5, activation_function="gelu_new")
    out = differ(cfg, kc, [("vocab_size", "vocabulary_size", None), ("layer_norm_epsilon", "layer_norm_epsilon", 1e-5)])
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        out.append(f"config.json activation_function={act!r} but keras_hub's GPT-2 uses the tanh-approximated "
                   "gelu ('gelu_new')")
    return out


def hf_config(backbone: Any) -> dict[str, Any]:
    """config.json for ``GPT2LMHeadModel`` of the backbone's sizes."""
    c = backbone.get_config()
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": c["vocabulary_size"],
            "n_positions": c["max_sequence_length"], "n_embd": c["hidden_dim"], "n_layer": c["num_layers"],
            "n_head": c["num_heads"], "n_inner": c["intermediate_dim"], "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "tie_word_embeddings": True}
