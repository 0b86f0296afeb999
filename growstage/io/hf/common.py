"""The layouts shared by the HF families: a :class:`Rule` maps one HF tensor (or one slice of a fused
one) to one keras_hub param and back.  numpy only.

Example::

    >>> import numpy as np
    >>> r = Rule("l/query/kernel", "q.weight", heads_in(2))
    >>> w = np.arange(24.).reshape(4, 6)          # torch Linear: (heads * head_dim, hidden)
    >>> r.shape((4, 6)), np.array_equal(r.back(r.fwd(w)), w)
    ((6, 2, 2), True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class Layout:
    """``fwd`` HF -> keras, ``back`` keras -> HF, ``shape`` keras shape from the HF shape, ``what`` for reports."""

    fwd: Callable[[np.ndarray], np.ndarray]
    back: Callable[[np.ndarray], np.ndarray]
    shape: Callable[[tuple], tuple]
    what: str


COPY = Layout(lambda a: a, lambda a: a, tuple, "")
T = Layout(lambda a: a.T, lambda a: a.T, lambda s: tuple(s[::-1]), ".T")


def heads_in(n: int) -> Layout:
    """torch Linear ``(n*hd, hidden)`` -> keras EinsumDense ``(hidden, n, hd)``."""
    return Layout(lambda a: a.T.reshape(a.shape[1], n, -1), lambda k: k.reshape(k.shape[0], -1).T,
                  lambda s: (s[1], n, s[0] // n), f".T -> (hidden, {n} heads, head_dim)")


def heads_out(n: int) -> Layout:
    """torch Linear ``(hidden, n*hd)`` -> keras ``(n, hd, hidden)``."""
    return Layout(lambda a: a.T.reshape(n, -1, a.shape[0]), lambda k: k.reshape(-1, k.shape[-1]).T,
                  lambda s: (n, s[1] // n, s[0]), f".T -> ({n} heads, head_dim, hidden)")


def bias_heads(n: int) -> Layout:
    return Layout(lambda a: a.reshape(n, -1), lambda k: k.reshape(-1), lambda s: (n, s[0] // n),
                  f" -> ({n} heads, head_dim)")


def conv_heads_in(n: int) -> Layout:
    """GPT-2's Conv1D ``(hidden, n*hd)`` (already ``(in, out)``) -> ``(hidden, n, hd)``."""
    return Layout(lambda a: a.reshape(a.shape[0], n, -1), lambda k: k.reshape(k.shape[0], -1),
                  lambda s: (s[0], n, s[1] // n), f" -> (hidden, {n} heads, head_dim)")


def conv_heads_out(n: int) -> Layout:
    """GPT-2's Conv1D ``(n*hd, hidden)`` -> ``(n, hd, hidden)``."""
    return Layout(lambda a: a.reshape(n, -1, a.shape[1]), lambda k: k.reshape(-1, k.shape[-1]),
                  lambda s: (n, s[0] // n, s[1]), f" -> ({n} heads, head_dim, hidden)")


def heads_first_in(n: int) -> Layout:
    """Gemma: torch ``(n*hd, hidden)`` -> keras ``(n, hidden, hd)``."""
    return Layout(lambda a: a.reshape(n, -1, a.shape[1]).transpose(0, 2, 1),
                  lambda k: k.transpose(0, 2, 1).reshape(-1, k.shape[1]),
                  lambda s: (n, s[1], s[0] // n), f" -> ({n} heads, hidden, head_dim)")


def heads_first_out(n: int) -> Layout:
    """Gemma: torch ``(hidden, n*hd)`` -> keras ``(n, hd, hidden)``."""
    return Layout(lambda a: a.reshape(a.shape[0], n, -1).transpose(1, 2, 0),
                  lambda k: k.transpose(2, 0, 1).reshape(k.shape[2], -1),
                  lambda s: (n, s[1] // n, s[0]), f" -> ({n} heads, head_dim, hidden)")


@dataclass(frozen=True)
class Rule:
    """Keras param ``keras`` is ``layout.fwd(hf_tensor[part])``; ``part = (axis, i, n)`` takes the i-th of
    n equal blocks of a fused tensor (GPT-2's ``c_attn``)."""

    keras: str
    hf: str
    layout: Layout = COPY
    part: tuple[int, int, int] | None = None
    groups: tuple[int, int] | None = None  # (axis, KV heads): query heads in KV-head groups (GQA)

    def split(self, keras_shape: tuple) -> list[list[int]] | None:
        """The source's split where the target's cannot tell it (query heads grouped per KV head)."""
        if self.groups is None:
            return None
        axis, n = self.groups
        out = [[int(d)] for d in keras_shape]
        out[axis] = [int(keras_shape[axis]) // n] * n
        return out

    def _cut(self, s: tuple) -> tuple:
        if self.part is None:
            return tuple(s)
        axis, _, n = self.part
        return tuple(d // n if i == axis % len(s) else d for i, d in enumerate(s))

    def shape(self, hf_shape: tuple) -> tuple:
        return tuple(int(d) for d in self.layout.shape(self._cut(hf_shape)))

    def index(self, hf_shape: tuple) -> Any:
        """The slice of the HF tensor this rule reads (None: all of it)."""
        if self.part is None:
            return None
        axis, i, n = self.part
        axis %= len(hf_shape)
        size = hf_shape[axis] // n
        return tuple(slice(i * size, (i + 1) * size) if a == axis else slice(None) for a in range(len(hf_shape)))

    def fwd(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.layout.fwd(a))

    def back(self, k: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.layout.back(k))

    def origin(self, hf_shape: tuple, prefix: str = "") -> str:
        cut = ""
        if self.part is not None:
            idx = self.index(hf_shape)
            cut = "[" + ", ".join(":" if s == slice(None) else f"{s.start}:{s.stop}" for s in idx) + "]"
        return f"{prefix}{self.hf}{cut}{self.layout.what}"


def gather_hf(rules: list[Rule], values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras values -> HF tensors: each rule's inverse, fused parts concatenated in order."""
    parts: dict[str, dict[int, np.ndarray]] = {}
    axes: dict[str, int] = {}
    out: dict[str, np.ndarray] = {}
    for r in rules:
        if r.keras not in values:
            continue
        arr = r.back(np.asarray(values[r.keras]))
        if r.part is None:
            out[r.hf] = arr
        else:
            parts.setdefault(r.hf, {})[r.part[1]] = arr
            axes[r.hf] = r.part[0]
    for name, blocks in parts.items():
        out[name] = np.ascontiguousarray(np.concatenate([blocks[i] for i in sorted(blocks)], axis=axes[name]))
    return out


def differ(hf_cfg: Mapping, keras_cfg: Mapping, pairs: list[tuple[str, str, Any]]) -> list[str]:
    """Non-weight settings that disagree: ``(hf key, keras key, hf default)``, numbers compared with a
    relative tolerance of 1e-9."""
    out = []
    for hk, kk, default in pairs:
        if kk not in keras_cfg:
            continue
        a, b = hf_cfg.get(hk, default), keras_cfg[kk]
        same = a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                          and abs(a - b) <= 1e-9 * max(abs(a), abs(b)))
        if not same:
            out.append(f"config.json {hk}={a!r} but the target's {kk}={b!r}")
    return out
