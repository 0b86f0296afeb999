"""Gemma (``model_type: gemma``) <-> keras_hub ``GemmaBackbone``; keras_hub's ``convert_gemma.py`` is
the reference: q/k/v kernels heads-first ``(heads, hidden, head_dim)``, the gated MLP as ``ffw_gating``
(gate), ``ffw_gating_2`` (up) and ``ffw_linear`` (down) -- keras ``intermediate_dim`` is twice HF's
``intermediate_size`` -- and the embedding tied to the output.

Example::

    >>> rs = rules({"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1})
    >>> [r.shape((4, 8)) for r in rs if r.keras.endswith("query/kernel")]
    [(2, 8, 2)]
"""
from __future__ import annotations

from typing import Any, Mapping

from growstage.io.hf.common import COPY, T, Rule, differ, heads_first_in, heads_first_out

MODEL_TYPES = ("gemma",)
ANCHOR = "embed_tokens.weight"
EXPORT_PREFIX = "model."
TOP: tuple[str, ...] = ()
BUFFERS = (".rotary_emb.inv_freq",)


def rules(cfg: Mapping[str, Any]) -> list[Rule]:
    nq = int(cfg["num_attention_heads"])
    nkv = int(cfg.get("num_key_value_heads") or nq)
    out = [Rule("token_embedding/embeddings", "embed_tokens.weight"), Rule("final_normalization/scale", "norm.weight")]
    for i in range(int(cfg["num_hidden_layers"])):
        k, h = f"decoder_block_{i}/", f"layers.{i}."
        out += [Rule(f"{k}attention/query/kernel", f"{h}self_attn.q_proj.weight", heads_first_in(nq), groups=(0, nkv)),
                Rule(f"{k}attention/key/kernel", f"{h}self_attn.k_proj.weight", heads_first_in(nkv)),
                Rule(f"{k}attention/value/kernel", f"{h}self_attn.v_proj.weight", heads_first_in(nkv)),
                Rule(f"{k}attention/attention_output/kernel", f"{h}self_attn.o_proj.weight", heads_first_out(nq),
                     groups=(0, nkv)),
                Rule(f"{k}pre_attention_norm/scale", f"{h}input_layernorm.weight", COPY),
                Rule(f"{k}pre_ffw_norm/scale", f"{h}post_attention_layernorm.weight", COPY),
                Rule(f"{k}ffw_gating/kernel", f"{h}mlp.gate_proj.weight", T),
                Rule(f"{k}ffw_gating_2/kernel", f"{h}mlp.up_proj.weight", T),
                Rule(f"{k}ffw_linear/kernel", f"{h}mlp.down_proj.weight", T)]
    return out


def differences(cfg: Mapping[str, Any], backbone: Any) -> list[str]:
    """RMSNorm epsilon, rope theta (keras_hub's Gemma fixes 10000) and the activation (tanh gelu)."""
    kc = dict(backbone.get_config(), rope_theta=10000.0)
    rope = cfg.get("rope_parameters") or {}
    hf = dict(cfg, rope_theta=cfg.get("rope_theta", rope.get("rope_theta", 10000.0)))
    out = differ(hf, kc, [("vocab_size", "vocabulary_size", None), ("rms_norm_eps", "layer_norm_epsilon", 1e-6),
                          ("rope_theta", "rope_theta", 10000.0), ("head_dim", "head_dim", None)])
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_new"):
        out.append(f"config.json hidden_activation={act!r} but keras_hub's Gemma uses the tanh-approximated gelu")
    return out


def hf_config(backbone: Any) -> dict[str, Any]:
    """config.json for ``GemmaForCausalLM`` of the backbone's sizes."""
    c = backbone.get_config()
    return {"model_type": "gemma", "architectures": ["GemmaForCausalLM"], "vocab_size": c["vocabulary_size"],
            "hidden_size": c["hidden_dim"], "intermediate_size": c["intermediate_dim"] // 2,
            "num_hidden_layers": c["num_layers"], "num_attention_heads": c["num_query_heads"],
            "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["head_dim"],
            "rms_norm_eps": c["layer_norm_epsilon"], "rope_theta": 10000.0, "hidden_activation": "gelu_pytorch_tanh",
            "tie_word_embeddings": True, "max_position_embeddings": 8192}
