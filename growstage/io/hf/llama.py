"""Llama (and Mistral, whose layout is the same: ``model_type`` llama | mistral) <-> keras_hub
``LlamaBackbone`` / ``MistralBackbone``; keras_hub's ``convert_llama3.py`` is the reference.  q/k/v/o
per head with grouped-query attention (KV heads their own count), the gated MLP (gate/up/down), RMSNorm,
an untied ``lm_head`` as ``token_embedding/reverse_embeddings`` (transposed).

Example::

    >>> rs = rules({"num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2})
    >>> [r.shape((4, 8)) for r in rs if r.keras.endswith("key/kernel")]
    [(8, 2, 2)]
"""
from __future__ import annotations

from typing import Any, Mapping

from growstage.io.hf.common import COPY, T, Rule, differ, heads_in, heads_out

MODEL_TYPES = ("llama", "mistral")
ANCHOR = "embed_tokens.weight"
EXPORT_PREFIX = "model."
TOP = ("lm_head.weight",)  # outside the base model's prefix
BUFFERS = (".rotary_emb.inv_freq",)


def rules(cfg: Mapping[str, Any]) -> list[Rule]:
    nq = int(cfg["num_attention_heads"])
    nkv = int(cfg.get("num_key_value_heads") or nq)
    out = [Rule("token_embedding/embeddings", "embed_tokens.weight"),
           Rule("token_embedding/reverse_embeddings", "lm_head.weight", T),
           Rule("sequence_output_layernorm/scale", "norm.weight")]
    for i in range(int(cfg["num_hidden_layers"])):
        k, h = f"transformer_layer_{i}/", f"layers.{i}."
        out += [Rule(f"{k}self_attention/query/kernel", f"{h}self_attn.q_proj.weight", heads_in(nq), groups=(1, nkv)),
                Rule(f"{k}self_attention/key/kernel", f"{h}self_attn.k_proj.weight", heads_in(nkv)),
                Rule(f"{k}self_attention/value/kernel", f"{h}self_attn.v_proj.weight", heads_in(nkv)),
                Rule(f"{k}self_attention/attention_output/kernel", f"{h}self_attn.o_proj.weight", heads_out(nq),
                     groups=(0, nkv)),
                Rule(f"{k}self_attention_layernorm/scale", f"{h}input_layernorm.weight", COPY),
                Rule(f"{k}feedforward_layernorm/scale", f"{h}post_attention_layernorm.weight", COPY),
                Rule(f"{k}feedforward_gate_dense/kernel", f"{h}mlp.gate_proj.weight", T),
                Rule(f"{k}feedforward_intermediate_dense/kernel", f"{h}mlp.up_proj.weight", T),
                Rule(f"{k}feedforward_output_dense/kernel", f"{h}mlp.down_proj.weight", T)]
    return out


def differences(cfg: Mapping[str, Any], backbone: Any) -> list[str]:
    """RMSNorm epsilon (keras_hub's converter does not pass it), rope theta and scaling, activation, tying."""
    kc = backbone.get_config()
    rope = cfg.get("rope_parameters") or {}
    hf = dict(cfg, rope_theta=cfg.get("rope_theta", rope.get("rope_theta", 10000.0)))
    out = differ(hf, kc, [("vocab_size", "vocabulary_size", None), ("rms_norm_eps", "layer_norm_epsilon", 1e-6),
                          ("rope_theta", "rope_max_wavelength", 10000.0), ("sliding_window", "sliding_window", None)])
    if cfg.get("hidden_act", "silu") != "silu":
        out.append(f"config.json hidden_act={cfg.get('hidden_act')!r} but keras_hub's Llama uses silu")
    scaling = cfg.get("rope_scaling") or ({} if rope.get("rope_type", "default") == "default" else rope)
    if scaling:
        out.append(f"config.json rope scaling {dict(scaling)} is not compared; check the target's rope settings")
    tied = bool(getattr(backbone.token_embedding, "tie_weights", False))
    if bool(cfg.get("tie_word_embeddings", False)) != tied:
        out.append(f"config.json tie_word_embeddings={cfg.get('tie_word_embeddings', False)} but the target's "
                   f"token_embedding has tie_weights={tied}")
    return out


def hf_config(backbone: Any) -> dict[str, Any]:
    """config.json for ``LlamaForCausalLM`` of the backbone's sizes."""
    c = backbone.get_config()
    tied = bool(getattr(backbone.token_embedding, "tie_weights", False))
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": c["vocabulary_size"],
            "hidden_size": c["hidden_dim"], "intermediate_size": c["intermediate_dim"],
            "num_hidden_layers": c["num_layers"], "num_attention_heads": c["num_query_heads"],
            "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["hidden_dim"] // c["num_query_heads"],
            "rms_norm_eps": c["layer_norm_epsilon"], "rope_theta": c["rope_max_wavelength"],
            "hidden_act": "silu", "tie_word_embeddings": tied, "attention_bias": False, "mlp_bias": False,
            "max_position_embeddings": 4096}
