"""Llama and its relatives with the same layout: keras_hub's LlamaBackbone (and Llama3Backbone),
MistralBackbone and QwenBackbone (Qwen2, biased query/key/value): a pre-norm decoder block with
grouped-query attention under RoPE, RMSNorm (``x * scale``) and a gated FFN.

Roles (docs/DESIGN.md "keras_hub models"): the residual stream (hidden units) is a normalised stream,
written by the embedding, the attention output projection and the FFN down-projection (``stream``)
and read through an RMSNorm by query, key, value, gate and up projections and the untied output
projection (``stream_input``).  The query heads axis is a grid (one block per KV head), so heads grow
keeping the query-per-KV-group structure; the head size is fixed (keras_hub's Llama derives it as
hidden // query heads: grow hidden size and query heads by one factor).  The two residual branches
(``self_attention``, ``feedforward``) end in the output projections: a new block with them zeroed is
the identity.  A tied output (Qwen's default) makes the final norm ``stream_output``.

Example::

    >>> import keras_hub
    >>> from growstage.framework.adapters.base import find_adapter
    >>> blk = keras_hub.models.LlamaBackbone(64, 1, 4, 32, 64, 2).get_layer("transformer_layer_0")
    >>> [(p.name, p.split[1], str(p.roles[1])) for p in find_adapter(blk).params(blk, [32])[:2]]
    [('self_attention/query/kernel', [2, 2], 'grouped_heads'), ('self_attention/key/kernel', [2], 'heads')]
"""
from __future__ import annotations

from typing import Any

import keras_hub
from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder
from keras_hub.src.models.mistral.mistral_transformer_decoder import MistralTransformerDecoder
from keras_hub.src.models.qwen.qwen_decoder import QwenTransformerDecoder

from growstage.core.values import (GROUPED_HEADS, HEAD_DIM, HEADS, INPUT, INPUT_GROUPED_HEADS, INPUT_HEAD_DIM,
                                   ROPE_HEAD_DIM, STREAM, STREAM_GAIN, STREAM_INPUT, UNITS)
from growstage.framework.adapters.base import ParamSpec, register_adapter, register_model
from growstage.framework.adapters.hub.common import passthrough
from growstage.framework.adapters.hub.streams import path_name, stream_backbone

_M = keras_hub.models


def pre_norm_start(layer: Any) -> tuple[bool, str]:
    """A new pre-norm block with both residual branches zeroed computes x + 0 + 0."""
    return True, "pre-norm: x + 0 + 0"


def spec(owner: Any, variable: Any, split: list[list[int]], roles: tuple[str, ...], **kw: Any) -> ParamSpec:
    return ParamSpec(path_name(owner, variable), variable, split, roles, **kw)


def grouped_attention(block: Any, attn: Any, layout: str, num_kv: int, branch: str) -> list[ParamSpec]:
    """Query, key, value and output projections of a grouped-query attention under RoPE.

    ``layout`` ``"mhd"``: kernels (hidden, heads, head size) (Llama); ``"hmd"``: (heads, hidden, head
    size) (Gemma).  The output projection (query heads, head size, hidden) ends residual branch ``branch``.
    """
    q = attn._query_dense if hasattr(attn, "_query_dense") else attn.query_dense
    k = attn._key_dense if hasattr(attn, "_key_dense") else attn.key_dense
    v = attn._value_dense if hasattr(attn, "_value_dense") else attn.value_dense
    o = attn._output_dense if hasattr(attn, "_output_dense") else attn.output_dense
    hax = 1 if layout == "mhd" else 0  # the heads axis of a kernel
    out = []
    for dense, heads, dim in ((q, GROUPED_HEADS, ROPE_HEAD_DIM), (k, HEADS, ROPE_HEAD_DIM), (v, HEADS, HEAD_DIM)):
        shape = [int(d) for d in dense.kernel.shape]
        n = shape[hax]
        groups = [n // num_kv] * num_kv if heads == GROUPED_HEADS else [n]
        split = [[shape[0]], groups, [shape[2]]] if hax == 1 else [groups, [shape[1]], [shape[2]]]
        roles = (STREAM_INPUT, heads, dim) if hax == 1 else (heads, STREAM_INPUT, dim)
        out.append(spec(block, dense.kernel, split, roles))
        if dense.bias is not None:  # Qwen: (heads, head size)
            out.append(spec(block, dense.bias, [groups, [shape[2]]], (heads, dim)))
    nq, hd, hidden = (int(d) for d in o.kernel.shape)
    out.append(spec(block, o.kernel, [[nq // num_kv] * num_kv, [hd], [hidden]],
                    (INPUT_GROUPED_HEADS, INPUT_HEAD_DIM, STREAM), branch=branch))
    if o.bias is not None:
        out.append(spec(block, o.bias, [[hidden]], (STREAM,), branch=branch))
    return out


def gated_ffn(block: Any, gate: Any, up: Any, down: Any, branch: str = "feedforward") -> list[ParamSpec]:
    """gate and up (hidden, intermediate) read the stream; down (intermediate, hidden) writes it."""
    out = []
    for dense in (gate, up):
        h, i = (int(d) for d in dense.kernel.shape)
        out.append(spec(block, dense.kernel, [[h], [i]], (STREAM_INPUT, UNITS)))
        if getattr(dense, "bias", None) is not None:
            out.append(spec(block, dense.bias, [[i]], (UNITS,)))
    i, h = (int(d) for d in down.kernel.shape)
    out.append(spec(block, down.kernel, [[i], [h]], (INPUT, STREAM), branch=branch))
    if getattr(down, "bias", None) is not None:
        out.append(spec(block, down.bias, [[h]], (STREAM,), branch=branch))
    return out


def rms_gain(block: Any, norm: Any, offset: float = 0.0) -> ParamSpec:
    """An RMSNorm's gain over the stream (under preserve the normalised values of new units are zero,
    so new entries keep their init)."""
    s = norm.scale
    return spec(block, s, [[int(s.shape[0])]], (STREAM_GAIN,), offset=offset)


def _llama_block(layer: Any, in_split: list[int]) -> list[ParamSpec]:
    attn = layer._self_attention_layer
    kv = attn.num_key_value_heads if hasattr(attn, "num_key_value_heads") else attn._num_key_value_heads
    return (grouped_attention(layer, attn, "mhd", kv, "self_attention")
            + [rms_gain(layer, layer._self_attention_layernorm)]
            + gated_ffn(layer, layer._feedforward_gate_dense, layer._feedforward_intermediate_dense,
                        layer._feedforward_output_dense)
            + [rms_gain(layer, layer._feedforward_layernorm)])


for _cls in (LlamaTransformerDecoder, MistralTransformerDecoder, QwenTransformerDecoder):
    register_adapter(_cls, _llama_block, output_split=passthrough, new_block=pre_norm_start)

for _bb in (_M.LlamaBackbone, _M.MistralBackbone, _M.QwenBackbone):
    register_model(_bb, transparent=True, hook=stream_backbone)
