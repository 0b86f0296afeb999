"""A built-in language-modelling task and a small transformer LM, for measuring growth.

The task needs no download: byte-level text from the Python standard library's
own ``.py`` sources (tests and site-packages left out).  The files are listed
sorted; a fixed byte budget picks files in a fixed pseudo-random order (by a
hash of their path) until it is spent; every tenth file by that hash goes to
validation, so train and validation never share a file.  ``LMData.sha256``
hashes the chosen paths and their bytes: every run says what it trained on
(it differs between Python versions, whose standard libraries differ).

The model is a decoder-only pre-LN transformer: byte embedding, learned
positions, ``layers`` blocks of causal ``MultiHeadAttention`` and a GELU
feed-forward, each behind a LayerNormalization and added to the residual
stream, a final LayerNormalization and an untied output projection.  Every
layer has a stable name (``block{i}_attn`` ...), as growstage requires.
:func:`train_flops` counts a training step's FLOPs exactly from the shapes.

Example::

    >>> m = build_lm(2, 32, 2, 64, context=16)
    >>> [l.name for l in m.layers][2:7]
    ['pos', 'block0_ln1', 'block0_attn', 'block0_add1', 'block0_ln2']
    >>> train_flops(m, batch=4)["total"] == 3 * train_flops(m, batch=4)["forward"]
    True
"""
from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass, field

import keras
import numpy as np

from growstage.core.values import OTHER, UNITS
from growstage.framework.adapters.base import ParamSpec, register_adapter

VOCAB = 256
_SKIP_DIRS = ("site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__")


@dataclass
class LMData:
    """Train and validation bytes, the files they came from, and a hash of both."""

    train: np.ndarray
    val: np.ndarray
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    sha256: str = ""
    root: str = ""

    def describe(self) -> str:
        return (f"{len(self.train_files)} train files ({self.train.size} bytes), {len(self.val_files)} "
                f"validation files ({self.val.size} bytes) from {self.root}; sha256 {self.sha256}")


def _key(path: str) -> bytes:
    return hashlib.sha256(path.encode()).digest()


def stdlib_files(root: str | None = None) -> list[str]:
    """The standard library's ``.py`` files (relative paths, sorted), tests and site-packages left out."""
    root = root or sysconfig.get_paths()["stdlib"]
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS)
        out += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".py")]
    return sorted(out)


def stdlib_corpus(budget: int = 4_000_000, *, root: str | None = None) -> LMData:
    """Bytes of standard-library sources up to ``budget`` bytes, split into train and validation by file.

    >>> d = stdlib_corpus(200_000)
    >>> d.train.dtype, d.train.size + d.val.size <= 200_000, set(d.train_files) & set(d.val_files)
    (dtype('uint8'), True, set())
    """
    root = root or sysconfig.get_paths()["stdlib"]
    files = stdlib_files(root)
    if not files:
        raise FileNotFoundError(f"no .py files under {root!r}: the standard library's sources are needed")
    chosen, used = [], 0
    for rel in sorted(files, key=_key):  # a fixed order that mixes packages, not alphabetical
        size = os.path.getsize(os.path.join(root, rel))
        if used + size > budget:
            continue
        chosen.append(rel)
        used += size
    digest = hashlib.sha256()
    parts: dict[str, list[bytes]] = {"train": [], "val": []}
    names: dict[str, list[str]] = {"train": [], "val": []}
    for rel in sorted(chosen):
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        digest.update(rel.encode() + b"\0" + data)
        split = "val" if _key(rel)[-1] % 10 == 0 else "train"
        parts[split].append(data)
        names[split].append(rel)
    arr = {k: np.frombuffer(b"".join(v), np.uint8).copy() for k, v in parts.items()}
    return LMData(arr["train"], arr["val"], names["train"], names["val"], digest.hexdigest(), root)


def windows(data: np.ndarray, rng: np.random.Generator, batch: int, context: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` random windows: inputs ``(batch, context)`` and next-byte targets, int32."""
    start = rng.integers(0, data.size - context - 1, batch)
    idx = start[:, None] + np.arange(context + 1)[None, :]
    w = data[idx].astype(np.int32)
    return w[:, :-1], w[:, 1:]


def val_windows(data: np.ndarray, context: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` evenly spaced validation windows (the same for every run)."""
    start = np.linspace(0, data.size - context - 2, count).astype(np.int64)
    idx = start[:, None] + np.arange(context + 1)[None, :]
    w = data[idx].astype(np.int32)
    return w[:, :-1], w[:, 1:]


@keras.saving.register_keras_serializable(package="growstage")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position vector to each step: ``x + P[:steps]``."""

    def __init__(self, max_steps: int, **kwargs):
        super().__init__(**kwargs)
        self.max_steps = int(max_steps)

    def build(self, shape):
        self.embeddings = self.add_weight(shape=(self.max_steps, int(shape[-1])), name="embeddings",
                                          initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + keras.ops.expand_dims(self.embeddings[: keras.ops.shape(x)[1]], 0)

    def compute_output_shape(self, shape):
        return shape  # declared, so building a model never reads the (possibly deferred) variable

    def get_config(self):
        return {**super().get_config(), "max_steps": self.max_steps}


@register_adapter(PositionEmbedding, output_split=lambda layer, in_split, dim: list(in_split) if sum(in_split) == dim
                  else [dim])
def _position_params(layer, in_split):
    e = layer.embeddings
    units = list(in_split) if sum(in_split) == e.shape[1] else [e.shape[1]]
    return [ParamSpec("embeddings", e, [[e.shape[0]], units], (OTHER, UNITS))]


def build_lm(layers: int, d_model: int, heads: int, ff: int, *, context: int = 64, name: str | None = None,
             seed: int | None = None) -> keras.Model:
    """The decoder-only pre-LN transformer LM over bytes: logits ``(batch, context, 256)``."""
    if d_model % heads:
        raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    L = keras.layers
    tokens = keras.Input((context,), dtype="int32", name="tokens")
    h = L.Embedding(VOCAB, d_model, name="embed",
                    embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02))(tokens)
    h = PositionEmbedding(context, name="pos")(h)
    for i in range(layers):
        a = L.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln1")(h)
        a = L.MultiHeadAttention(heads, d_model // heads, name=f"block{i}_attn")(a, a, use_causal_mask=True)
        h = L.Add(name=f"block{i}_add1")([h, a])
        f = L.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln2")(h)
        f = L.Dense(ff, activation="gelu", name=f"block{i}_ff1")(f)
        f = L.Dense(d_model, name=f"block{i}_ff2")(f)
        h = L.Add(name=f"block{i}_add2")([h, f])
    h = L.LayerNormalization(epsilon=1e-5, name="ln_final")(h)
    logits = L.Dense(VOCAB, name="head")(h)
    return keras.Model(tokens, logits, name=name or f"lm_{layers}x{d_model}h{heads}f{ff}")


def train_flops(model: keras.Model, batch: int) -> dict[str, int]:
    """FLOPs of one training step on ``batch`` sequences, exactly from the layers' shapes.

    Counted: every matrix product (2 FLOPs per multiply-add): Dense layers, the
    attention projections, the scores ``Q K^T`` and their product with ``V``
    (all ``steps x steps`` pairs: ``MultiHeadAttention`` computes the masked
    half too).  The backward pass costs twice the forward (one product for the
    input's gradient, one for the weights').  Not counted: embedding lookups,
    normalisation, GELU, softmax, bias adds and residual adds (elementwise,
    a few percent of the total at these sizes).
    """
    steps = int(model.input_shape[1])
    tokens = batch * steps
    fwd = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            q = layer._query_dense.kernel.shape  # (d_in, heads, key_dim)
            v = layer._value_dense.kernel.shape
            o = layer._output_dense.kernel.shape  # (heads, value_dim, d_out)
            fwd += 2 * tokens * q[0] * q[1] * q[2] * 2  # query and key projections
            fwd += 2 * tokens * v[0] * v[1] * v[2]
            fwd += 2 * batch * q[1] * steps * steps * q[2]  # scores
            fwd += 2 * batch * v[1] * steps * steps * v[2]  # weighted values
            fwd += 2 * tokens * o[0] * o[1] * o[2]
        elif isinstance(layer, keras.layers.Dense):
            k = layer.kernel.shape
            fwd += 2 * tokens * k[0] * k[1]
    return {"forward": int(fwd), "backward": int(2 * fwd), "total": int(3 * fwd)}
