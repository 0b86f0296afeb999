"""The model families of ``benchmarks/lm_growth.py``: the project's own LM and keras_hub's GPT-2 and Llama.

Every family builds a byte-level causal LM (vocabulary 256) from a spec ``(layers, hidden, heads, ff)``,
offline from a config (no preset download), feeds it ``(batch, context)`` int32 byte windows, counts
a training step's FLOPs from the shapes, and names its blocks for ``stack_rename``.

keras_hub models are built with ``dropout=0.0``: keras_hub's default (0.1) is regularisation for long
runs; on a budget of a few hundred steps it only slows the model that has it, and the small models
would be compared against a handicapped target.  Llama gets half as many KV heads as query heads
(grouped-query attention), so width growth grows both.
"""
from __future__ import annotations

import keras
import numpy as np

from growstage.lm import VOCAB, build_lm, train_flops

FAMILIES = ("lm", "gpt2", "llama")


def _hub_attention(layer) -> tuple[int, int] | None:
    """(query heads, head size) of a keras_hub attention layer, None for anything else."""
    q = getattr(layer, "_query_dense", None) or getattr(layer, "query_dense", None)
    if q is None or not hasattr(q, "kernel"):
        return None
    shape = q.kernel.shape  # (hidden, heads, head size)
    return int(shape[1]), int(shape[2])


def hub_train_flops(model: keras.Model, batch: int, context: int) -> dict[str, int]:
    """A training step's FLOPs for a keras_hub causal LM, counted as :func:`growstage.lm.train_flops` counts.

    Every matrix product, 2 FLOPs per multiply-add: Dense and EinsumDense kernels (attention
    projections, feed-forward incl. Llama's gate), the attention scores and their product with the
    values over all ``context x context`` pairs (on the query heads: keras_hub repeats grouped KV
    heads), the output projection onto the vocabulary; backward = 2 x forward.  Not counted:
    embedding lookups, norms, activations, softmax, RoPE, adds.
    """
    tokens = batch * context
    fwd = 0
    for layer in model._flatten_layers(include_self=False):
        kind = type(layer).__name__
        if kind in ("Dense", "EinsumDense"):
            fwd += 2 * tokens * int(np.prod(layer.kernel.shape))
        elif kind == "ReversibleEmbedding":
            fwd += 2 * tokens * int(np.prod(layer.embeddings.shape))  # logits = h @ E^T (or the untied matrix)
        heads = _hub_attention(layer)
        if heads is not None:
            fwd += 2 * 2 * batch * heads[0] * context * context * heads[1]
    return {"forward": int(fwd), "backward": int(2 * fwd), "total": int(3 * fwd)}


def build(family: str, spec: tuple, context: int, name: str | None = None) -> keras.Model:
    """The family's LM of ``spec = (layers, hidden, heads, ff)``."""
    layers, hidden, heads, ff = spec
    if family == "lm":
        return build_lm(layers, hidden, heads, ff, context=context, name=name)
    import keras_hub

    tag = name or family  # one name for every size: a rename between sizes must find its layers
    if family == "gpt2":
        bb = keras_hub.models.GPT2Backbone(vocabulary_size=VOCAB, num_layers=layers, num_heads=heads,
                                           hidden_dim=hidden, intermediate_dim=ff, dropout=0.0,
                                           max_sequence_length=context, name=f"{tag}_backbone")
        return keras_hub.models.GPT2CausalLM(backbone=bb, preprocessor=None, name=tag)
    if family == "llama":
        bb = keras_hub.models.LlamaBackbone(vocabulary_size=VOCAB, num_layers=layers, num_query_heads=heads,
                                            num_key_value_heads=max(1, heads // 2), hidden_dim=hidden,
                                            intermediate_dim=ff, dropout=0.0, name=f"{tag}_backbone")
        return keras_hub.models.LlamaCausalLM(backbone=bb, preprocessor=None, name=tag)
    raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")


def inputs(family: str, x: np.ndarray):
    """What the family's model takes for byte windows ``x``: the array, or keras_hub's dict (no padding)."""
    if family == "lm":
        return x
    return {"token_ids": x, "padding_mask": np.ones_like(x)}


def flops(family: str, model: keras.Model, batch: int, context: int) -> int:
    """Training FLOPs per step of ``model`` on ``batch`` windows of ``context`` bytes."""
    if family == "lm":
        return train_flops(model, batch)["total"]
    return hub_train_flops(model, batch, context)["total"]


def block_names(family: str, snapshot_keys, layers: int) -> tuple[list[str], str]:
    """The layer keys of the blocks and the ``block=`` pattern for ``stack_rename``.

    keras_hub blocks are ``transformer_layer_{i}`` (one key per block); before the keras_hub
    naming lands, the keys carry the backbone's name as a prefix, which the pattern then includes.
    """
    if family == "lm":
        return list(snapshot_keys), "block{i}_"
    keys = [k for k in snapshot_keys if k.endswith("transformer_layer_0")]
    if not keys:
        raise KeyError(f"no transformer_layer_0 among {sorted(snapshot_keys)}")
    prefix = keys[0][: -len("transformer_layer_0")]
    return list(snapshot_keys), prefix + "transformer_layer_{i}"
