"""What the pre-norm RMSNorm families (Llama, Mistral, Qwen, Gemma) share: their RMSNorm layers, and
the backbone hook that marks the residual stream's writers and readers outside the blocks.

The token embedding writes the stream (``stream``; Gemma's also carries ``size_power`` because the
backbone multiplies it by sqrt(hidden)); an untied output projection reads it (``stream_input``); a
tied one reads the embedding again, so the final norm gets ``stream_output`` (Gemma's also the
inverse ``size_power``).  docs/DESIGN.md "keras_hub models" derives each factor.

Example::

    >>> import keras_hub
    >>> from growstage.framework.adapters.graph import describe
    >>> bb = keras_hub.models.LlamaBackbone(64, 1, 4, 32, 64, 2)
    >>> [[str(r) for r in p.roles] for p in describe(bb)["token_embedding"].params]
    [['vocab', 'stream'], ['stream_input', 'vocab']]
"""
from __future__ import annotations

from typing import Any

from keras_hub.src.models.gemma.rms_normalization import RMSNormalization
from keras_hub.src.models.llama.llama_layernorm import LlamaLayerNorm
from keras_hub.src.models.mistral.mistral_layer_norm import MistralLayerNormalization
from keras_hub.src.models.qwen.qwen_layernorm import QwenLayerNorm

from growstage.core.values import STREAM, STREAM_GAIN, STREAM_INPUT, STREAM_OUTPUT, VOCAB
from growstage.framework.adapters.base import ParamSpec, register_adapter
from growstage.framework.adapters.graph import LayerInfo
from growstage.framework.adapters.hub.common import passthrough

# the norms whose call reads ``1 + scale`` (Gemma's), not ``scale``
GAIN_OFFSET = {RMSNormalization: 1.0}


def path_name(owner: Any, variable: Any) -> str:
    """A variable's name below ``owner`` (the tail of its Keras path: docs "keras_hub naming")."""
    prefix = owner.path + "/"
    return variable.path[len(prefix):] if variable.path.startswith(prefix) else variable.name


def _rms_norm(layer: Any, in_split: list[int]) -> list[ParamSpec]:
    s = layer.scale
    n = int(s.shape[0])
    return [ParamSpec("scale", s, [list(in_split) if sum(in_split) == n else [n]], (STREAM_GAIN,),
                      offset=GAIN_OFFSET.get(type(layer), 0.0))]


for _cls in (LlamaLayerNorm, MistralLayerNormalization, QwenLayerNorm, RMSNormalization):
    register_adapter(_cls, _rms_norm, output_split=passthrough)


def _info(infos: dict[str, LayerInfo], layer: Any) -> LayerInfo | None:
    return next((i for i in infos.values() if i.layer is layer), None)


def stream_backbone(backbone: Any, infos: dict[str, LayerInfo], sqrt_embedding: bool = False) -> None:
    """Roles of the token embedding and the final norm of a pre-norm RMSNorm backbone (a model hook)."""
    emb, norm = _info(infos, backbone.token_embedding), _info(infos, backbone.layer_norm)
    if emb is None or norm is None:
        return
    power = (1, 0.5) if sqrt_embedding else None
    for p in emb.params:
        if p.name == "embeddings":
            p.roles, p.size_power = (VOCAB, STREAM), power
        elif p.name == "reverse_embeddings":
            p.roles = (STREAM_INPUT, VOCAB)
    if getattr(backbone.token_embedding, "tie_weights", False):
        gain = norm.params[0]
        gain.roles, gain.size_power = (STREAM_OUTPUT,), ((0, -0.5) if sqrt_embedding else None)
        norm.width_notes.append("feeds the tied output embedding: divided among copied hidden units, and scaled by "
                          "old/new under preserve" + (" times sqrt(new/old) for the sqrt(hidden) embedding "
                                                            "multiplier" if sqrt_embedding else ""))
    if sqrt_embedding:
        emb.width_notes.append("the backbone multiplies it by sqrt(hidden): a wider copy is divided by sqrt(new/old)")
