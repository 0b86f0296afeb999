"""Depth by stacking: which trained block feeds each block of a deeper model.

A deeper model's blocks are copies of the trained ones; growstage expresses
that as a source mapping, ``rename={source_layer: [target layers]}``, so the
plan shows where each value came from and the optimizer slots follow the same
rows.  Two orders:

- ``stack`` (G_stack, Du et al. 2024): the whole trained stack repeated,
  new block j copies old block j mod L;
- ``interleave``: each trained block copied into adjacent positions, new
  block j copies old block j * L // L_new (block i -> i*k ... i*k+k-1).

Neither is function-preserving (a copied block adds its output a second
time); for that, grow with new zeroed residual blocks (``fill="preserve"``).
Pure Python.

Example::

    >>> depth_map(2, 4, "stack"), depth_map(2, 4, "interleave")
    ([0, 1, 0, 1], [0, 0, 1, 1])
    >>> stack_rename(["embed", "block0_attn", "block1_attn", "head"], 2, 4, method="interleave")
    {'block0_attn': ['block0_attn', 'block1_attn'], 'block1_attn': ['block2_attn', 'block3_attn']}
"""
from __future__ import annotations

import re
from typing import Iterable

from growstage.core.errors import GrowstageError, did_you_mean

METHODS = ("stack", "interleave")


def depth_map(old_depth: int, new_depth: int, method: str = "stack") -> list[int]:
    """For each block of the deeper model, the index of the trained block it copies."""
    if method not in METHODS:
        raise GrowstageError(f"unknown stacking method {method!r}{did_you_mean(method, METHODS)} "
                             f"(methods: {', '.join(METHODS)})")
    if old_depth < 1 or new_depth < old_depth:
        raise GrowstageError(f"stacking grows {old_depth} blocks to {new_depth}: needs 1 <= old <= new")
    if method == "stack":
        return [j % old_depth for j in range(new_depth)]
    return [j * old_depth // new_depth for j in range(new_depth)]


def stack_rename(layers: Iterable[str], old_depth: int, new_depth: int, *, method: str = "stack",
                 block: str = "block{i}_") -> dict[str, list[str]]:
    """``rename=`` for :func:`growstage.transfer`: each layer of a trained block to its copies.

    ``layers``: the trained model's weighted layers (a snapshot, or its layer names); ``block``: how a block's layers
    begin (``{i}`` the block index).  Layers outside the blocks keep their names.
    """
    if "{i}" not in block:
        raise GrowstageError(f"block pattern {block!r} has no '{{i}}' for the block index")
    pattern = re.compile("^" + re.escape(block).replace(re.escape("{i}"), r"(\d+)") + "(.*)$")
    sources = depth_map(old_depth, new_depth, method)
    out: dict[str, list[str]] = {}
    found = set()
    for name in layers:
        m = pattern.match(name)
        if m is None:
            continue
        i, rest = int(m.group(1)), m.group(2)
        if i >= old_depth:
            raise GrowstageError(f"layer {name!r} is block {i}, but the trained model has {old_depth} blocks")
        found.add(i)
        targets = [block.format(i=j) + rest for j, s in enumerate(sources) if s == i]
        if targets != [name]:
            out[name] = targets
    if found != set(range(old_depth)):
        raise GrowstageError(f"no layers of blocks {sorted(set(range(old_depth)) - found)} match {block!r}")
    return out
