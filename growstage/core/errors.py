"""Every error growstage raises is a :class:`GrowstageError`.

Messages name the thing that is wrong and, where a name was probably mistyped,
the closest names that exist, so a user can fix the call without reading code.

Example::

    >>> try:
    ...     raise UnknownNameError("layer", "lstm_2", ["lstm2", "gru1"])
    ... except GrowstageError as e:
    ...     print(e)
    unknown layer 'lstm_2'; did you mean 'lstm2'?
"""
from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates most similar to ``name``, best first (may be empty)."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    near = closest(name, candidates)
    if not near:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in near) + "?"


class GrowstageError(Exception):
    """Base class of every error raised by growstage."""


class UnknownNameError(GrowstageError, KeyError):
    """A name given by the user (layer, param, rule key) matches nothing."""

    def __init__(self, kind: str, name: str, candidates: Iterable[str] = (), hint: str = ""):
        self.kind, self.name = kind, name
        self.suggestions = closest(name, candidates)
        msg = f"unknown {kind} {name!r}{did_you_mean(name, candidates)}"
        if hint:
            msg += " " + hint
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class AutoNameError(GrowstageError):
    """A layer has a Keras auto-generated name, which is not stable across rebuilds."""


class PlanError(GrowstageError):
    """The transfer plan cannot be carried out; ``problems`` lists every reason found."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems, self.source = list(problems), source
        where = f" from {source}" if source else ""
        head = f"{len(problems)} problem(s) in the transfer plan{where}; nothing was changed:"
        super().__init__("\n  - ".join([head] + self.problems))


class ShapeError(GrowstageError, ValueError):
    """Shapes or split infos that cannot be reconciled."""


class TransferError(GrowstageError):
    """Writing values failed part-way; the target was restored to its previous values."""


class StoreError(GrowstageError, OSError):
    """A snapshot file is missing, damaged, incomplete or not a growstage file."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __str__(self) -> str:
        return self.args[0]
