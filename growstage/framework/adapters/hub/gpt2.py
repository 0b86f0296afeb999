"""GPT-2: keras_hub's TransformerDecoder (pre-LN when ``normalize_first``), and GPT2CausalLM's tied output.

The logits are ``layer_norm(h) @ token_embedding.embeddings.T``: the final LayerNorm is a consumer
of the hidden units (see ``common.tied_output_norm``).

Example::

    >>> import keras_hub
    >>> from growstage.framework.adapters.base import find_adapter
    >>> blk = keras_hub.layers.TransformerDecoder(64, 2, normalize_first=True); blk.build((None, 8, 32))
    >>> [(p.name, p.branch) for p in find_adapter(blk).params(blk, [32]) if p.branch]
    [('self_attention/attention_output/kernel', 'self_attention'), ('self_attention/attention_output/bias', 'self_attention'), ('feedforward_output_dense/kernel', 'feedforward'), ('feedforward_output_dense/bias', 'feedforward')]
"""
from __future__ import annotations

import keras_hub

from growstage.framework.adapters.base import register_adapter, register_model
from growstage.framework.adapters.hub.common import block_start, passthrough, post_ln_output_norm, tied_output_norm, \
    transformer_block_params

register_adapter(keras_hub.layers.TransformerDecoder, transformer_block_params, output_split=passthrough,
                 new_block=block_start, output_norm=post_ln_output_norm)


def _causal_lm(model, infos):
    bb = model.backbone
    tied_output_norm(model, infos, bb.layer_norm, bb.token_embedding)


register_model(keras_hub.models.GPT2CausalLM, transparent=True, hook=_causal_lm)
