"""BERT (``model_type: bert``) <-> keras_hub ``BertBackbone``; keras_hub's ``convert_bert.py`` is the
reference.  Post-LN encoder; LayerNorms named ``weight/bias`` (or the old ``gamma/beta``, read too).

Example::

    >>> rs = rules({"num_hidden_layers": 1, "num_attention_heads": 2})
    >>> [r.origin((4, 4)) for r in rs if r.keras.endswith("attention_output/kernel")]
    ['encoder.layer.0.attention.output.dense.weight.T -> (2 heads, head_dim, hidden)']
"""
from __future__ import annotations

from typing import Any, Mapping

from growstage.io.hf.common import COPY, T, Rule, bias_heads, differ, heads_in, heads_out

MODEL_TYPES = ("bert",)
ANCHOR = "embeddings.word_embeddings.weight"  # "bert." in BertForMaskedLM's files, "" in BertModel's
EXPORT_PREFIX = ""
TOP: tuple[str, ...] = ()
BUFFERS = ("embeddings.position_ids",)


def _norm(k: str, h: str) -> list[Rule]:
    return [Rule(f"{k}gamma", f"{h}LayerNorm.weight"), Rule(f"{k}beta", f"{h}LayerNorm.bias")]


def rules(cfg: Mapping[str, Any]) -> list[Rule]:
    n = int(cfg["num_attention_heads"])
    e = "embeddings."
    out = [Rule("token_embedding/embeddings", f"{e}word_embeddings.weight"),
           Rule("position_embedding/embeddings", f"{e}position_embeddings.weight"),
           Rule("segment_embedding/embeddings", f"{e}token_type_embeddings.weight"),
           *_norm("embeddings_layer_norm/", e), Rule("pooled_dense/kernel", "pooler.dense.weight", T),
           Rule("pooled_dense/bias", "pooler.dense.bias")]
    for i in range(int(cfg["num_hidden_layers"])):
        k, h = f"transformer_layer_{i}/", f"encoder.layer.{i}."
        for qkv in ("query", "key", "value"):
            out += [Rule(f"{k}self_attention_layer/{qkv}/kernel", f"{h}attention.self.{qkv}.weight", heads_in(n)),
                    Rule(f"{k}self_attention_layer/{qkv}/bias", f"{h}attention.self.{qkv}.bias", bias_heads(n))]
        out += [Rule(f"{k}self_attention_layer/attention_output/kernel", f"{h}attention.output.dense.weight",
                     heads_out(n)),
                Rule(f"{k}self_attention_layer/attention_output/bias", f"{h}attention.output.dense.bias", COPY),
                *_norm(f"{k}self_attention_layer_norm/", f"{h}attention.output."),
                Rule(f"{k}feedforward_intermediate_dense/kernel", f"{h}intermediate.dense.weight", T),
                Rule(f"{k}feedforward_intermediate_dense/bias", f"{h}intermediate.dense.bias"),
                Rule(f"{k}feedforward_output_dense/kernel", f"{h}output.dense.weight", T),
                Rule(f"{k}feedforward_output_dense/bias", f"{h}output.dense.bias"),
                *_norm(f"{k}feedforward_layer_norm/", f"{h}output.")]
    return out


def differences(cfg: Mapping[str, Any], backbone: Any) -> list[str]:
    """keras_hub's BERT fixes LayerNorm epsilon 1e-12 and uses the tanh-approximated gelu; HF's BERT
    checkpoints use the exact gelu."""
    kc = dict(backbone.get_config(), layer_norm_eps=1e-12)
    out = differ(cfg, kc, [("vocab_size", "vocabulary_size", None), ("layer_norm_eps", "layer_norm_eps", 1e-12)])
    act = cfg.get("hidden_act", "gelu")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        out.append(f"config.json hidden_act={act!r} (exact gelu) but keras_hub's BERT uses the tanh-approximated "
                   "gelu: outputs differ slightly")
    return out


def hf_config(backbone: Any) -> dict[str, Any]:
    """config.json for ``BertModel`` of the backbone's sizes (gelu_new: keras_hub's activation)."""
    c = backbone.get_config()
    return {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": c["vocabulary_size"],
            "hidden_size": c["hidden_dim"], "num_hidden_layers": c["num_layers"],
            "num_attention_heads": c["num_heads"], "intermediate_size": c["intermediate_dim"],
            "max_position_embeddings": c["max_sequence_length"], "type_vocab_size": c["num_segments"],
            "hidden_act": "gelu_new", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0}
