"""Plan rows and their rendering: a readable table with repeated layers
collapsed (``lstm{0..5}/cell/kernel``), and JSON.

Example::

    >>> rows = [PlanRow(f"lstm{i}", "cell/bias", f"lstm{i}/cell/bias", "padded", (16,), (24,))
    ...         for i in range(3)]
    >>> print(render_table(rows).splitlines()[2])   # "=": the source has the same name
    lstm{0..2}/cell/bias  padded  =       (16,) -> (24,)
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from growstage.core.vocab import Action

ACTIONS = tuple(a.value for a in Action)


@dataclass
class PlanRow:
    """What happens to one target param (or one source param nobody uses)."""

    layer: str | None
    param: str | None
    source: str | None
    action: str
    old_shape: tuple[int, ...] | None = None
    new_shape: tuple[int, ...] | None = None
    reason: str = ""
    old_split: list[list[int]] | None = None
    new_split: list[list[int]] | None = None
    mode: str | None = None
    fill: str | None = None
    split_derived: bool = False

    def __post_init__(self) -> None:
        self.action = Action(self.action).value  # a plain str: one of the vocabulary's actions

    @property
    def target(self) -> str | None:
        return f"{self.layer}/{self.param}" if self.layer is not None else None

    @property
    def source_layer(self) -> str | None:
        """The source's layer name (layer names may contain ``/``; param names are kept)."""
        return self.source[: -len(self.param) - 1] if self.source is not None and self.param else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target
        return d


_NUM = re.compile(r"(\d+)(?!.*\d)")


def _ranges(nums: list[int]) -> str:
    nums = sorted(set(nums))
    if len(nums) > 2 and nums == list(range(nums[0], nums[-1] + 1)):
        return f"{{{nums[0]}..{nums[-1]}}}"
    return "{" + ",".join(map(str, nums)) + "}"


def _group_key(row: PlanRow):
    """Rows that differ only in the layer's last number share a key."""
    if row.layer is not None:
        if row.source not in (None, row.target):
            return None, None
        name = row.layer
    else:  # an unused or ignored source param: ``param`` is its name
        name = row.source_layer or ""
    m = _NUM.search(name)
    if not m:
        return None, None
    pattern = name[:m.start()] + "#" + name[m.end():]
    key = (pattern, row.param, row.action, row.old_shape, row.new_shape, row.reason,
           row.layer is None, row.source is not None)
    return key, int(m.group(1))


def collapse(rows: Iterable[PlanRow]) -> list[tuple[str, PlanRow]]:
    """``(label, row)`` pairs; rows differing only in a layer number become one label."""
    groups: dict[Any, list[tuple[int, PlanRow]]] = {}
    for i, row in enumerate(rows):
        key, num = _group_key(row)
        groups.setdefault(key if key is not None else ("#single", i), []).append((num, row))
    out = []
    for key, members in groups.items():
        row = members[0][1]
        if len(members) == 1:
            out.append((row.target or row.source or "", row))
            continue
        label = key[0].replace("#", _ranges([n for n, _ in members])) + "/" + str(row.param)
        source = label if key[-1] else None
        out.append((label, PlanRow(**{**row.__dict__, "source": source})))
    return out


def _fmt_shape(row: PlanRow) -> str:
    if row.old_shape is None and row.new_shape is None:
        return ""
    if row.old_shape == row.new_shape or row.old_shape is None or row.new_shape is None:
        return str(row.new_shape if row.new_shape is not None else row.old_shape)
    return f"{row.old_shape} -> {row.new_shape}"


def render_table(rows: Iterable[PlanRow], *, collapse_layers: bool = True, notes: Iterable[str] = ()) -> str:
    """A plain-text table: target, action, source, shapes, reason; then the counts and notes."""
    rows = list(rows)
    items = collapse(rows) if collapse_layers else [(r.target or r.source or "", r) for r in rows]
    table = [("param", "action", "source", "shape", "note")]
    for label, r in items:
        note = r.reason
        if r.split_derived:
            note = (note + "; " if note else "") + "old split derived from the new"
        source = "=" if r.source is not None and r.source == label and r.layer is not None else (r.source or "-")
        table.append((label, r.action, source, _fmt_shape(r), note))
    widths = [max(len(str(line[c])) for line in table) for c in range(4)]
    lines = []
    for i, line in enumerate(table):
        cells = [str(line[c]).ljust(widths[c]) for c in range(4)] + [line[4]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    counts = {a: sum(r.action == a for r in rows) for a in ACTIONS}
    lines.append(", ".join(f"{n} {a}" for a, n in counts.items() if n))
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def render_json(rows: Iterable[PlanRow], **extra: Any) -> str:
    return json.dumps({"rows": [r.to_dict() for r in rows], **extra}, indent=1, default=list)


@dataclass
class Report:
    """The plan as carried out: printable as a table (``str``) and as JSON."""

    rows: list[PlanRow]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes_written: int = 0
    plan: Any = field(default=None, repr=False, compare=False)  # the plan carried out (optimizer state follows it)

    def table(self, *, collapse_layers: bool = True) -> str:
        return render_table(self.rows, collapse_layers=collapse_layers, notes=self.notes)

    def to_json(self) -> str:
        return render_json(self.rows, notes=self.notes, seconds=self.seconds, bytes_written=self.bytes_written)

    def counts(self) -> dict[str, int]:
        return {a: n for a in ACTIONS if (n := sum(r.action == a for r in self.rows))}

    def row(self, target: str) -> PlanRow:
        for r in self.rows:
            if r.target == target:
                return r
        raise KeyError(target)

    def __str__(self) -> str:
        return self.table()
