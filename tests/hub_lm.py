"""Shared by the keras_hub decoder-LM tests (test_hub_llama.py, test_hub_gemma.py): tiny builders
(vocab 64, 2 layers, 4 query heads, 2 KV heads, hidden 32, intermediate 64, seq 8), weights moved
away from their init (norm gains included, so an offset or a factor left out shows), logits, the
1e-5 x max(1, |logits|) bound, and a hand-made stacked model to check G_stack against."""
import keras
import numpy as np

SEQ, VOCAB = 8, 64


def llama_like(family="Llama", layers=2, hidden=32, nq=4, nkv=2, inter=64, seed=0, **kw):
    import keras_hub

    keras.utils.set_random_seed(seed)
    bb = getattr(keras_hub.models, f"{family}Backbone")(
        vocabulary_size=VOCAB, num_layers=layers, num_query_heads=nq, num_key_value_heads=nkv, hidden_dim=hidden,
        intermediate_dim=inter, **kw)
    return getattr(keras_hub.models, f"{family}CausalLM")(backbone=bb, preprocessor=None)


def gemma(layers=2, hidden=32, nq=4, nkv=2, inter=64, seed=0, **kw):
    import keras_hub

    keras.utils.set_random_seed(seed)
    bb = keras_hub.models.GemmaBackbone(vocabulary_size=VOCAB, num_layers=layers, num_query_heads=nq,
                                        num_key_value_heads=nkv, hidden_dim=hidden, intermediate_dim=inter,
                                        head_dim=8, **kw)
    return keras_hub.models.GemmaCausalLM(backbone=bb, preprocessor=None)


def inputs(seed=1):
    rng = np.random.default_rng(seed)
    return {"token_ids": rng.integers(0, VOCAB, (2, SEQ)).astype("int32"), "padding_mask": np.ones((2, SEQ), "int32")}


def logits(model, x=None):
    return keras.ops.convert_to_numpy(model(inputs() if x is None else x))


def close(a, b):
    err, bound = float(np.abs(a - b).max()), 1e-5 * max(1.0, float(np.abs(a).max()))
    assert err <= bound, f"logits moved by {err:.3g} > {bound:.3g}"


def trained_like(model, seed=3):
    """Every weight moved off its init (norm gains too: Gemma's start at 0, Llama's at 1)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        a = keras.ops.convert_to_numpy(v)
        v.assign((a + rng.normal(0, 0.3 if "scale" in v.path else 0.05, a.shape)).astype(a.dtype))
    return model


def values(model):
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


def hand_stacked(old, new, order, block):
    """``new`` with every weight of ``old`` assigned by hand: new block j takes old block order[j]."""
    src = values(old)
    for v in new.weights:
        path = v.path
        for j, i in enumerate(order):
            head = block.format(i=j) + "/"
            if path.startswith(head):
                path = block.format(i=i) + "/" + path[len(head):]
                break
        v.assign(src[path])
    return new
