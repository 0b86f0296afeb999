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


CONSUMER_ROLES: tuple[Role, ...] = (Role.INPUT, Role.RECURRENT, Role.INPUT_HEADS, Role.INPUT_HEAD_DIM,
                                    Role.QUERY_HEAD_DIM)
