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

import rich.box
import rich.markup
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
    # the source tensor's own name (before any renaming) and the rule that mapped it onto ``source``
    # (Rules, rename=, var_name_mapping, a preset); None: the same name, no rule
    source_name: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        self.action = Action(self.action).value  # a plain str: one of the vocabulary's actions

    @property
    def target(self) -> str | None:
        if self.layer is None:
            return None
        return f"{self.layer}/{self.param}" if self.param else self.layer  # a whole-layer target has no param

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
    """Rows that differ only in the layer's last number share a key (a renamed source never collapses)."""
    if row.rule or row.source_name not in (None, row.source):
        return None, None
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
    """``(label, row)`` pairs; rows differing only in a layer number become one label.

    The pairs come grouped by the layers they cover: every param of one layer (or of one
    collapsed set of layers) prints together, in the order the layers first appear.
    """
    groups: dict[Any, list[tuple[int, PlanRow]]] = {}
    for i, row in enumerate(rows):
        key, num = _group_key(row)
        groups.setdefault(key if key is not None else ("#single", i), []).append((num, row))
    out = []
    for key, members in groups.items():
        row = members[0][1]
        if len(members) == 1:
            out.append(((row.layer or row.source_layer or "",), row.target or row.source or "", row))
            continue
        nums = _ranges([n for n, _ in members])
        label = key[0].replace("#", nums) + "/" + str(row.param)
        source = label if key[-1] else None
        out.append(((key[0], nums), label, PlanRow(**{**row.__dict__, "source": source})))
    first: dict[Any, int] = {}
    for i, (layers, _, _) in enumerate(out):
        first.setdefault(layers, i)
    order = sorted(range(len(out)), key=lambda i: (first[out[i][0]], i))
    return [out[i][1:] for i in order]


def _fmt_shape(row: PlanRow) -> str:
    if row.old_shape is None and row.new_shape is None:
        return ""
    if row.old_shape == row.new_shape or row.old_shape is None or row.new_shape is None:
        return str(row.new_shape if row.new_shape is not None else row.old_shape)
    return f"{row.old_shape} -> {row.new_shape}"


# Header underlined with ASCII dashes, no other lines: readable in logs, diffs and terminals alike.
_BOX = rich.box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)


def rich_table(rows: Iterable[PlanRow], *, collapse_layers: bool = True) -> "rich.table.Table":
    """The table as a :class:`rich.table.Table` (print it with a ``rich`` console for colour)."""
    from rich.table import Table

    rows = list(rows)
    items = collapse(rows) if collapse_layers else [(r.target or r.source or "", r) for r in rows]
    table = Table(box=_BOX, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    rules = any(r.rule for _, r in items)  # the rule column only when some name was mapped
    for name in ("param", "action", "source", *(("rule",) if rules else ()), "shape", "note"):
        table.add_column(name, no_wrap=name != "note", style=_STYLE.get(name, ""))
    for label, r in items:
        note = r.reason
        if r.split_derived:
            note = (note + "; " if note else "") + "old split derived from the new"
        own = r.source_name if r.source_name is not None else r.source
        source = "=" if own is not None and own == label and r.layer is not None else (own or "-")
        action = f"[{_ACTION_STYLE[r.action]}]{r.action}[/]" if r.action in _ACTION_STYLE else r.action
        cells = [rich.markup.escape(label), action, rich.markup.escape(source)]
        cells += [rich.markup.escape(r.rule or "")] if rules else []
        table.add_row(*cells, _fmt_shape(r), rich.markup.escape(note))
    return table


_STYLE = {"param": "cyan", "shape": "dim"}
_ACTION_STYLE = {"padded": "yellow", "sliced": "yellow", "kept-init": "magenta", "ignored": "dim", "unused": "red"}


def counts_line(rows: Iterable[PlanRow]) -> str:
    rows = list(rows)
    counts = {a: sum(r.action == a for r in rows) for a in ACTIONS}
    return ", ".join(f"{n} {a}" for a, n in counts.items() if n)


def render_table(rows: Iterable[PlanRow], *, collapse_layers: bool = True, notes: Iterable[str] = (),
                 console: Any = None) -> str:
    """The table (target, action, source, shapes, reason), the counts and the notes as plain text.

    With ``console`` (a :class:`rich.console.Console`), it is printed there instead, in colour
    on a terminal, and the plain text is still returned.
    """
    import io

    from rich.console import Console

    rows = list(rows)
    table = rich_table(rows, collapse_layers=collapse_layers)
    tail = [counts_line(rows)] + [f"note: {n}" for n in notes]
    buf = io.StringIO()
    Console(file=buf, width=100_000, color_system=None, force_terminal=False, soft_wrap=True).print(table)
    if console is not None:
        console.print(table)
        for line in tail:
            console.print(line, markup=False, highlight=False)
    return "\n".join([line.rstrip() for line in buf.getvalue().splitlines()] + tail)


def render_json(rows: Iterable[PlanRow], **extra: Any) -> str:
    """JSON, one row per line (the row list indented, each row compact)."""
    body = ",\n  ".join(json.dumps(r.to_dict(), default=list) for r in rows)
    rest = "".join(f",\n {json.dumps(k)}: {json.dumps(v, default=list)}" for k, v in extra.items())
    return "{\"rows\": [" + (f"\n  {body}\n " if body else "") + "]" + rest + "\n}"


@dataclass
class Report:
    """The plan as carried out: printable as a table (``str``) and as JSON."""

    rows: list[PlanRow]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes_written: int = 0
    plan: Any = field(default=None, repr=False, compare=False)  # the plan carried out (optimizer state follows it)

    def table(self, *, collapse_layers: bool = True, console: Any = None) -> str:
        """Plain text; with a ``rich`` ``console`` also printed there (in colour on a terminal)."""
        return render_table(self.rows, collapse_layers=collapse_layers, notes=self.notes, console=console)

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
