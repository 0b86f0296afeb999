"""Gemma: keras_hub's GemmaBackbone (Gemma 1 and 2 options) and its GemmaDecoderBlock.

As Llama (see ``llama``): pre-norm, grouped-query attention under RoPE (kernels laid out (heads,
hidden, head size); the head size is its own config, independent of hidden), a gated FFN
(``ffw_gating`` is the GELU gate, ``ffw_gating_2`` the up projection, ``ffw_linear`` down).  Two
differences: the RMSNorm gain is ``1 + scale`` (``ParamSpec.offset``), and the backbone multiplies
the tied embedding by sqrt(hidden), so a wider copy of it is divided by sqrt(new/old) and the final
norm's ``1 + scale`` multiplied by it (``ParamSpec.size_power``; with the stream's own factors:
s' = (1 + s) / sqrt(new/old) - 1 under double or clone, s' = s under preserve).  Gemma 2's optional
post-attention and post-FFW norms normalise a zeroed projection to zero: a new block is x + 0 + 0.

Example::

    >>> import keras_hub
    >>> from growstage.framework.adapters.graph import describe
    >>> bb = keras_hub.models.GemmaBackbone(64, 1, 4, 2, 32, 64, 8)
    >>> g = describe(bb)["final_normalization"].params[0]
    >>> [str(r) for r in g.roles], g.offset, g.size_power
    (['stream_output'], 1.0, (0, -0.5))
"""
from __future__ import annotations

import functools
from typing import Any

import keras_hub
from keras_hub.src.models.gemma.gemma_decoder_block import GemmaDecoderBlock

from growstage.core.values import UNITS
from growstage.framework.adapters.base import ParamSpec, register_adapter, register_model
from growstage.framework.adapters.hub.common import passthrough
from growstage.framework.adapters.hub.llama import gated_ffn, grouped_attention, pre_norm_start, rms_gain, spec
from growstage.framework.adapters.hub.streams import stream_backbone


def _post_norm(layer: Any, name: str) -> list[ParamSpec]:
    """Gemma 2's norm after a branch's output projection: it normalises that projection's ``stream``-
    scaled output, so under preserve its output carries the stream's factor already (a plain gain); a
    zeroed projection makes it put out zero, so it needs no zeroing itself."""
    norm = getattr(layer, name, None) if getattr(layer, f"use_{name}", False) else None
    if norm is None:
        return []
    s = norm.scale
    return [spec(layer, s, [[int(s.shape[0])]], (UNITS,), offset=1.0)]


def _gemma_block(layer: Any, in_split: list[int]) -> list[ParamSpec]:
    attn = layer.attention
    out = [rms_gain(layer, layer.pre_attention_norm, offset=1.0)]
    out += grouped_attention(layer, attn, "hmd", attn.num_key_value_heads, "self_attention")
    out += _post_norm(layer, "post_attention_norm")
    out += [rms_gain(layer, layer.pre_ffw_norm, offset=1.0)]
    out += gated_ffn(layer, layer.gating_ffw, layer.gating_ffw_2, layer.ffw_linear)
    out += _post_norm(layer, "post_ffw_norm")
    return out


register_adapter(GemmaDecoderBlock, _gemma_block, output_split=passthrough, new_block=pre_norm_start)
register_model(keras_hub.models.GemmaBackbone, transparent=True,
               hook=functools.partial(stream_backbone, sqrt_embedding=True))
