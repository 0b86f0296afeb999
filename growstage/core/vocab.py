"""The vocabulary of DESIGN.md as str-valued enums: actions, modes, fills, axis roles.

Each member is a ``str``, so users keep writing ``mode="subset"`` and comparing
``row.action == "padded"``; code inside growstage names the members.

Example::

    >>> Mode("subset") is Mode.SUBSET, Action.PADDED == "padded", Fill.DOUBLE in PRESERVING
    (True, True, True)
    >>> Action.writes()
    (<Action.COPIED: 'copied'>, <Action.SLICED: 'sliced'>, <Action.PADDED: 'padded'>)
"""
from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a plan does with one target param (or one unused source param)."""

    COPIED = "copied"
    SLICED = "sliced"
    PADDED = "padded"
    IDENTITY = "identity"      # a new layer started as the identity (function-preserving depth)
    ZEROED = "zeroed"          # a new layer's residual branch started at zero
    KEPT_INIT = "kept-init"
    CUSTOM = "custom"
    IGNORED = "ignored"
    UNUSED = "unused"

    @classmethod
    def writes(cls) -> tuple["Action", ...]:
        """The actions that write a value computed from the source."""
        return (cls.COPIED, cls.SLICED, cls.PADDED)


class Mode(StrEnum):
    """RETURNN's ``copy_param_mode``: how a source value meets a target param of another shape."""

    EXACT = "exact"
    IFPOSSIBLE = "ifpossible"
    SUBSET = "subset"
    RESET = "reset"


class Fill(StrEnum):
    """What padded entries hold (besides a number or a callable)."""

    INIT = "init"
    ZEROS = "zeros"
    PRESERVE = "preserve"
    NET2NET = "net2net"
    DOUBLE = "double"
    CLONE = "clone"
    LEMON = "lemon"
    # only the new entries, drawn per block from the initializer's distribution (full-shape fans);
    # not bit-identical to a fresh build's init (INIT is), see core/init_blocks.py
    INIT_BLOCKS = "init-blocks"


PRESERVING: tuple[Fill, ...] = (Fill.PRESERVE, Fill.NET2NET, Fill.DOUBLE, Fill.CLONE, Fill.LEMON)


class Role(StrEnum):
    """What an axis of a param is tied to."""

    UNITS = "units"          # this layer's own units
    INPUT = "input"          # the units of the layer(s) feeding this one
    GATES = "gates"          # gate blocks x own units (LSTM/GRU)
    HEADS = "heads"          # attention heads
    HEAD_DIM = "head_dim"    # size per head
    SPATIAL = "spatial"      # conv kernel window
    VOCAB = "vocab"          # embedding rows
    OTHER = "other"          # anything else (kept as a whole)
    # Consumer roles: the axis reads units of some layer, so function-preserving growth zeroes or
    # divides its new entries (adapters set them; core/growth.py reads nothing but roles).
    RECURRENT = "recurrent"            # a recurrent kernel's rows: this layer's own units, one step back
    INPUT_HEADS = "input_heads"        # an attention output projection's heads axis
    INPUT_HEAD_DIM = "input_head_dim"  # ... and its size-per-head axis
    QUERY_HEAD_DIM = "query_head_dim"  # a query's size per head: read by the scores, scaled by 1/sqrt(size)
    # Grouped-query attention: query head j reads KV head j // (query heads per KV head), so the query
    # heads axis is a grid (KV head, head in group) with one block per KV head; the number of blocks
    # follows the KV heads, and growth maps the grid so each copied query head keeps its KV head's copy.
    GROUPED_HEADS = "grouped_heads"              # a query projection's heads axis
    INPUT_GROUPED_HEADS = "input_grouped_heads"  # an attention output projection's (grouped) heads axis
    # A size per head rotated by RoPE: growing it changes every rotation frequency (no fill preserves it).
    ROPE_HEAD_DIM = "rope_head_dim"
    # A normalised residual stream (pre-norm transformers with RMSNorm): under ``preserve`` the stream's
    # new units stay exactly zero and its old ones scale by sqrt(new/old): every RMSNorm then sees the same
    # mean square (epsilon included) and puts out sqrt(new/old) times its old output, which its gain undoes;
    # the new units still train (their readers start fresh).
    STREAM = "stream"                # writes the stream: an embedding's units, a residual branch's last projection
    STREAM_INPUT = "stream_input"    # reads the stream (after a norm): divided under copying fills,
                                     # fresh under preserve
    STREAM_GAIN = "stream_gain"      # an RMSNorm gain over the stream: copied, scaled by sqrt(old/new) under preserve
    STREAM_OUTPUT = "stream_output"  # the last norm's gain before a tied output projection: divided under copying
                                     # fills, scaled by old/new under preserve (its norm and the embedding grew)


CONSUMER_ROLES: tuple[Role, ...] = (Role.INPUT, Role.RECURRENT, Role.INPUT_HEADS, Role.INPUT_HEAD_DIM,
                                    Role.QUERY_HEAD_DIM, Role.INPUT_GROUPED_HEADS, Role.STREAM_INPUT,
                                    Role.STREAM_OUTPUT)
# Axes whose fresh entries are zero under ``preserve``: the consumers that must not see new units, and the
# stream's writers (its new units stay zero); a stream's readers and its last norm start fresh instead.
ZERO_FRESH_ROLES: tuple[Role, ...] = tuple(
    r for r in CONSUMER_ROLES if r not in (Role.STREAM_INPUT, Role.STREAM_OUTPUT)) + (Role.STREAM,)
GROUPED_ROLES: tuple[Role, ...] = (Role.GROUPED_HEADS, Role.INPUT_GROUPED_HEADS)
