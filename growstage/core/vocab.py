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


PRESERVING: tuple[Fill, ...] = (Fill.PRESERVE, Fill.NET2NET, Fill.DOUBLE)


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
