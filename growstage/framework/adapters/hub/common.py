"""What every keras_hub family shares: backbones and tasks as transparent models, PositionEmbedding,
and the composite adapter of a transformer block built from Keras sublayers.

A block's params are its sublayers' params (through their own adapters) named by variable path
(``self_attention/query/kernel``, ``feedforward_output_dense/bias``); the params of the sublayers
that end a residual branch inside the block's ``call`` carry ``ParamSpec.branch``.

Example::

    >>> import keras_hub
    >>> from growstage.framework.adapters.base import find_adapter
    >>> pe = keras_hub.layers.PositionEmbedding(sequence_length=8); pe.build((None, 8, 4))
    >>> [(p.name, [str(r) for r in p.roles]) for p in find_adapter(pe).params(pe, [4])]
    [('embeddings', ['vocab', 'units'])]
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
import keras_hub

from growstage.core.values import INPUT, UNITS, VOCAB
from growstage.framework.adapters.base import ParamSpec, find_adapter, register_adapter, register_model
from growstage.framework.adapters.graph import LayerInfo

# keras_hub names its layers itself (``transformer_layer_0``, ``position_embedding``) and its variable
# paths carry no backbone or task name: stable across builds, so the models are transparent
register_model(keras_hub.models.Backbone, transparent=True)
register_model(keras_hub.models.Task, transparent=True)

POST_LN = ("post-LN: the block's LayerNorms renormalise x + 0, so zeroed branches are not the identity, and no "
           "old post-LN block precedes it to hand its output norm over; see docs/DESIGN.md 'keras_hub models'")


def passthrough(layer: Any, in_split: list[int], out_dim: int) -> list[int]:
    return list(in_split) if sum(in_split) == out_dim else [out_dim]


@register_adapter(keras_hub.layers.PositionEmbedding, output_split=passthrough)
def _position_embedding(layer, in_split):
    e = layer.position_embeddings  # rows are positions: grown rows keep their init, never read by old ones
    return [ParamSpec("embeddings", e, [[e.shape[0]], [e.shape[1]]], (VOCAB, UNITS))]


def sublayer_params(layer: Any, parts: Iterable[tuple[Any, Sequence[int] | None, str | None]]) -> list[ParamSpec]:
    """The params of a layer made of sublayers: each ``(sublayer, in_split, branch)`` through the
    sublayer's own adapter, named by the variable path below ``layer``; ``branch`` marks a residual branch's end."""
    out = []
    for sub, in_split, branch in parts:
        if sub is None:
            continue
        adapter = find_adapter(sub)
        if adapter is None:
            raise TypeError(f"{type(layer).__name__} {layer.name!r}: sublayer {type(sub).__name__} has no adapter")
        prefix = sub.path[len(layer.path) + 1:] if sub.path.startswith(layer.path + "/") else sub.name
        for spec in adapter.params(sub, list(in_split) if in_split else [0]):
            spec.name = f"{prefix}/{spec.name}"
            # an attention layer's branch ends in its output projection; any other sublayer is the end
            if branch is not None and (not isinstance(sub, keras.layers.MultiHeadAttention)
                                       or spec.name.startswith(f"{prefix}/attention_output/")):
                spec.branch = branch
            out.append(spec)
    return out


def transformer_block_params(layer: Any, in_split: list[int]) -> list[ParamSpec]:
    """keras_hub's TransformerDecoder / TransformerEncoder: attention (per head), its LayerNorm,
    optional cross-attention, the FFN (intermediate, output) and its LayerNorm.  The attention output
    projection and the FFN output dense end the residual branches."""
    cross = getattr(layer, "_cross_attention_layer", None)
    parts = [(layer._self_attention_layer, in_split, "self_attention"),
             (layer._self_attention_layer_norm, in_split, None)]
    if cross is not None:
        parts += [(cross, in_split, "cross_attention"), (layer._cross_attention_layer_norm, in_split, None)]
    parts += [(layer._feedforward_intermediate_dense, in_split, None),
              (layer._feedforward_output_dense, None, "feedforward"),
              (layer._feedforward_layer_norm, in_split, None)]
    return sublayer_params(layer, parts)


def block_start(layer: Any) -> tuple[bool, str]:
    """A new TransformerDecoder/Encoder with zeroed branches: the identity when pre-LN (x + 0 + 0)."""
    if layer.normalize_first:
        return True, "pre-LN: x + 0 + 0"
    return False, POST_LN


def post_ln_output_norm(layer: Any) -> str | None:
    """A post-LN block ends in its FFN LayerNorm: new blocks after it take that norm over (DESIGN.md)."""
    return None if layer.normalize_first else "feedforward_layer_norm"


def tied_output_norm(model: Any, infos: dict[str, LayerInfo], norm: Any, embedding: Any) -> None:
    """A task whose logits are ``norm(h) @ embedding.T`` (tied): the norm's gain and bias are a consumer
    of the hidden units, so growth that copies units divides them among the copies (the copies of
    the embedding's columns are summed by the tied output, each counted once)."""
    if not getattr(embedding, "tie_weights", False):
        return
    info = next((i for i in infos.values() if i.layer is norm), None)
    if info is None:
        return
    for p in info.params:
        if len(p.shape) == 1:
            p.roles = (INPUT,)
    info.width_notes.append("feeds the tied output embedding: its gain and bias are divided among copied hidden units, so "
                      "the logits stay exact when the width grows by double, clone or lemon")
