"""BERT: keras_hub's TransformerEncoder (post-LN unless ``normalize_first``) and MaskedLMHead.

BertMaskedLM's head reads the tied token embedding (``token_embedding.embeddings``, one param with
two readers: it stays the embedding layer's); the head's LayerNorm feeds that tied output, so its
gain and bias are a consumer of the hidden units.  A new post-LN block is not the identity with
zeroed branches alone: new blocks take over the last old block's output LayerNorm
(``output_norm``, docs/DESIGN.md "keras_hub models").

Example::

    >>> import keras_hub
    >>> from growstage.framework.adapters.base import find_adapter
    >>> blk = keras_hub.layers.TransformerEncoder(64, 2); blk.build((None, 8, 32))
    >>> find_adapter(blk).new_block(blk)[0]
    False
"""
from __future__ import annotations

import keras_hub

from growstage.core.values import INPUT, VOCAB
from growstage.framework.adapters.base import ParamSpec, register_adapter
from growstage.framework.adapters.hub.common import block_start, passthrough, post_ln_output_norm, \
    sublayer_params, transformer_block_params

register_adapter(keras_hub.layers.TransformerEncoder, transformer_block_params, output_split=passthrough,
                 new_block=block_start, output_norm=post_ln_output_norm)


@register_adapter(keras_hub.layers.MaskedLMHead)
def _masked_lm_head(layer, in_split):
    out = sublayer_params(layer, [(layer._intermediate_dense, in_split, None),
                                  (layer._intermediate_layer_norm, None, None)])
    tied = layer.token_embedding is not None
    if tied:
        for p in out:
            if p.name.startswith("intermediate_layer_norm/"):
                p.roles = (INPUT,)  # feeds the tied output: divided among copied hidden units
    else:
        k = layer._kernel
        out.append(ParamSpec("output_kernel", k, [[k.shape[0]], [k.shape[1]]], (INPUT, VOCAB)))
    b = layer._bias
    out.append(ParamSpec("output_bias", b, [[b.shape[0]]], (VOCAB,)))
    return out
