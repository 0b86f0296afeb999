"""Rename rules: from checkpoint names to target names.  Pure Python.

Applied to each source name in this order: ``ignore_params`` /
``ignore_params_prefixes`` (the name is dropped), ``exact`` (final; a list of
targets lets one tensor feed several), ``strip_prefix``, ``scopes`` (the
longest matching ``'old/': 'new/'``; ``''`` is the root), ``regex`` (the first
``(pattern, replacement)`` that fully matches; ``\\1`` and ``\\g<name>``
back-references), ``add_prefix``.  A rule that matched no name is an error,
and so are two source names landing on one target.

Example::

    >>> r = Rules(scopes={"enc/": "encoder/"}, regex=[(r"lstm(\\d+)/(.*)", r"blstm\\1/\\2")],
    ...           exact={"emb/w": ["src_emb/embeddings", "tgt_emb/embeddings"]})
    >>> r.apply(["enc/out/kernel", "lstm0/kernel", "emb/w"]).targets
    {'encoder/out/kernel': 'enc/out/kernel', 'blstm0/kernel': 'lstm0/kernel', 'src_emb/embeddings': 'emb/w', 'tgt_emb/embeddings': 'emb/w'}
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from growstage.core.errors import GrowstageError, PlanError, did_you_mean


@dataclass
class RuleResult:
    """``targets``: ``{target_name: source_name}``; ``ignored``: dropped source names; ``log``: per-name rule trail."""

    targets: dict[str, str]
    ignored: list[str]
    log: dict[str, str] = field(default_factory=dict)


@dataclass
class Rules:
    """Renames from source (checkpoint) names to target names; see the module doc for the order."""

    exact: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    scopes: Mapping[str, str] = field(default_factory=dict)
    regex: Sequence[tuple[str, str]] = ()
    strip_prefix: str | None = None
    add_prefix: str | None = None
    ignore_params: Sequence[str] = ()
    ignore_params_prefixes: Sequence[str] = ()

    def __post_init__(self) -> None:
        self._regex = []
        for item in self.regex:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise GrowstageError(f"regex rule {item!r} must be a (pattern, replacement) pair")
            try:
                self._regex.append((re.compile(item[0]), item[1]))
            except re.error as e:
                raise GrowstageError(f"regex rule {item[0]!r} is not a valid regular expression: {e}") from None

    @classmethod
    def coerce(cls, rules: Any) -> "Rules":
        """A Rules from a Rules, a dict of its fields, or None (no renaming)."""
        if rules is None:
            return cls()
        if isinstance(rules, Rules):
            return rules
        if isinstance(rules, Mapping):
            known = list(cls.__dataclass_fields__)
            bad = [k for k in rules if k not in known]
            if bad:
                raise GrowstageError(f"unknown rule {bad[0]!r}{did_you_mean(bad[0], known)} (rules: {', '.join(known)})")
            return cls(**rules)
        raise GrowstageError(f"rules must be a growstage.Rules or a dict, not a {type(rules).__name__}")

    def _rename(self, name: str, hits: dict[str, int]) -> tuple[list[str], str]:
        if name in self.exact:
            hits[f"exact {name!r}"] += 1
            dest = self.exact[name]
            return ([dest] if isinstance(dest, str) else list(dest)), f"exact {name!r}"
        trail = []
        if self.strip_prefix and name.startswith(self.strip_prefix):
            hits[f"strip_prefix {self.strip_prefix!r}"] += 1
            name = name[len(self.strip_prefix):]
            trail.append(f"strip_prefix {self.strip_prefix!r}")
        best = max((s for s in self.scopes if s in ("", "/") or name.startswith(s)), key=len, default=None)
        if best is not None:
            hits[f"scopes {best!r}"] += 1
            rest = name if best in ("", "/") else name[len(best):]
            name = self.scopes[best].lstrip("/") + rest if self.scopes[best] != "/" else rest
            trail.append(f"scope {best!r} -> {self.scopes[best]!r}")
        for pattern, repl in self._regex:
            m = pattern.fullmatch(name)
            if m:
                hits[f"regex {pattern.pattern!r}"] += 1
                name = m.expand(repl)
                trail.append(f"regex {pattern.pattern!r} -> {repl!r}")
                break
        if self.add_prefix:
            hits[f"add_prefix {self.add_prefix!r}"] += 1
            name = self.add_prefix + name
            trail.append(f"add_prefix {self.add_prefix!r}")
        return [name], ", ".join(trail) or "unchanged"

    def apply(self, names: Iterable[str]) -> RuleResult:
        """Map every source name; raises :class:`PlanError` for rules that matched nothing or colliding targets."""
        names = list(names)
        hits: dict[str, int] = {f"exact {k!r}": 0 for k in self.exact}
        hits.update({f"scopes {k!r}": 0 for k in self.scopes})
        hits.update({f"regex {p.pattern!r}": 0 for p, _ in self._regex})
        for label, val in (("strip_prefix", self.strip_prefix), ("add_prefix", self.add_prefix)):
            if val:
                hits[f"{label} {val!r}"] = 0
        ignore = {i: 0 for i in self.ignore_params}
        ignore_pre = {p: 0 for p in self.ignore_params_prefixes}
        targets: dict[str, str] = {}
        ignored: list[str] = []
        log: dict[str, str] = {}
        problems: list[str] = []
        for name in names:
            pre = next((p for p in ignore_pre if name.startswith(p)), None)
            if name in ignore or pre is not None:
                if name in ignore:
                    ignore[name] += 1
                else:
                    ignore_pre[pre] += 1
                ignored.append(name)
                continue
            dests, how = self._rename(name, hits)
            for dest in dests:
                if dest in targets:
                    problems.append(f"source names {targets[dest]!r} and {name!r} both map to {dest!r}")
                targets[dest] = name
                log[dest] = how
        scopes = sorted({n[: i + 1] for n in names for i, c in enumerate(n) if c == "/"})
        for label, n in hits.items():
            if n == 0:
                kind, _, key = label.partition(" ")
                key = key.strip(chr(39))
                hint = _exact_hint(key, names) if kind == "exact" else did_you_mean(key, scopes) if kind == "scopes" else ""
                problems.append(f"rule {label} matched no name in the checkpoint{hint}")
        for item, n in ignore.items():
            if n == 0:
                problems.append(f"ignore_params entry {item!r} matched no name{did_you_mean(item, names)}")
        for item, n in ignore_pre.items():
            if n == 0:
                problems.append(f"ignore_params_prefixes entry {item!r} matched no name{did_you_mean(item, scopes)}")
        if problems:
            raise PlanError(problems)
        return RuleResult(targets, ignored, log)


def _exact_hint(key: str, names: list[str]) -> str:
    """An exact rule names one tensor; a name that is a scope of others gets the scope syntax."""
    under = sum(n.startswith(key + "/") for n in names)
    if under:
        return (f"; {key!r} is the scope of {under} names: to rename a scope, end both sides with '/' "
                f"(scopes={{{key + '/'!r}: ...}}; on the command line --rename {key}/=NEW/)")
    return did_you_mean(key, names)
