"""``init_from_checkpoint`` with TensorFlow's assignment-map semantics, on Keras 3 models.

A target is named either by its growstage name (``layer/param``:
``blstm0/forward_layer/cell/kernel``, ``emb/embeddings``) or by its Keras variable path
(``blstm0/forward_lstm/lstm_cell/kernel``; layers a ``Sequential`` builds carry the
model's name in front: ``sequential/dense/kernel``); a TF1 tensor name's ``:0`` suffix
(``'new_scope_1/var1:0'``) is accepted on both sides and dropped.  The map, applied in
sorted order of checkpoint names (a later entry wins for a variable both set):

- ``'ckpt/name': 'var/path'``: one tensor into one variable (or into the
  parts ``var/path/part_0..k`` of a partitioned target, sliced along the axis
  the parts split);
- ``'old_scope/': 'new_scope/'``: every param under ``new_scope/`` from the
  tensor of the same relative name under ``old_scope/`` (looked up by the
  growstage name first, then by the Keras path);
- ``'/': 'scope/'``: every param under ``scope/`` from the root of the
  checkpoint; ``'old/': '/'``: every param of the model from ``old/``.

A scope entry covers the params growstage describes (the ones a snapshot holds);
Keras-internal state without a param name (seed generators, counters) is never
demanded.  Unlike TensorFlow, a scope entry that covers no variable is an error, every
problem is reported at once, and a failed write restores every variable.

Example::

    >>> import keras, numpy as np, tempfile, os
    >>> x = keras.Input((3,))
    >>> src = keras.Model(x, keras.layers.Dense(2, name="enc")(x))
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, **{"old/enc/kernel": np.ones((3, 2), "f4"), "old/enc/bias": np.ones(2, "f4")})
    >>> r = init_from_checkpoint(path, {"old/": "/"}, src)
    >>> [(x.target, x.source) for x in r.rows]
    [('enc/bias', 'old/enc/bias'), ('enc/kernel', 'old/enc/kernel')]
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from growstage.core.errors import GrowstageError, PlanError, did_you_mean
from growstage.engine.sources import open_checkpoint
from growstage.io.readers import Reader
from growstage.io.readers.base import part_groups
from growstage.engine.report import PlanRow
from growstage.engine.report import Report
from growstage.engine.writing import write_all

class _Targets:
    """The model's variables under both their names; a partitioned ``w/part_0..k`` is one target ``w``."""

    def __init__(self, model: Any):
        from growstage.framework.adapters.graph import describe

        described = {f"{l}/{p.name}": p.variable for l, info in describe(model, allow_auto_names=True).items()
                     for p in info.params}
        gs_of = {id(v): n for n, v in described.items()}
        self.params: dict[str, list[Any]] = _grouped(described)  # growstage name -> parts
        by_path = _grouped({v.path: v for v in model.variables})
        # a Keras path names the same parts as a growstage name, or a variable growstage does not describe
        self.alias = {path: _gs_name(parts, gs_of) or path for path, parts in by_path.items()}
        self.all = {**by_path, **self.params}
        self.keras_path = {gs: path for path, gs in self.alias.items() if gs in self.params}

    def canonical(self, name: str) -> str | None:
        name = _strip0(name)
        if name in self.params:
            return name
        return self.alias.get(name)

    def under(self, scope: str) -> list[tuple[str, list[str]]]:
        """``(growstage name, [relative names to look up])`` of every param under ``scope``."""
        out = []
        for gs in sorted(self.params):
            rels = [n[len(scope):] for n in (gs, self.keras_path.get(gs)) if n is not None and n.startswith(scope)]
            if rels:
                out.append((gs, list(dict.fromkeys(rels))))
        return out


def _grouped(by_name: dict[str, Any]) -> dict[str, list[Any]]:
    groups = part_groups(by_name)
    in_parts = {n for ps in groups.values() for n in ps.values()}
    out = {name: [v] for name, v in by_name.items() if name not in in_parts}
    out.update({base: [by_name[ps[i]] for i in sorted(ps)] for base, ps in groups.items()})
    return out


def _gs_name(parts: list[Any], gs_of: dict[int, str]) -> str | None:
    names = [gs_of.get(id(v)) for v in parts]
    if None in names:
        return None
    return names[0].rsplit("/part_", 1)[0] if len(names) > 1 else names[0]


def _scopes(names: Any) -> list[str]:
    """Every scope (``a/``, ``a/b/``) of the names."""
    return sorted({n[: i + 1] for n in names for i, c in enumerate(n) if c == "/"})


def _strip0(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _in_reader(name: str, reader: Reader) -> str | None:
    for n in (name, _strip0(name)):
        if n in reader:
            return n
    return None


def _slices(parts: list[Any], full: tuple[int, ...]) -> list[tuple[slice, ...]] | None:
    shapes = [tuple(p.shape) for p in parts]
    if len(parts) == 1:
        return [tuple(slice(None) for _ in full)] if shapes[0] == full else None
    for axis in range(len(full)):
        others_ok = all(len(s) == len(full) and all(s[a] == full[a] for a in range(len(full)) if a != axis)
                        for s in shapes)
        if others_ok and sum(s[axis] for s in shapes) == full[axis]:
            out, start = [], 0
            for s in shapes:
                idx = [slice(None)] * len(full)
                idx[axis] = slice(start, start + s[axis])
                out.append(tuple(idx))
                start += s[axis]
            return out
    return None


def init_from_checkpoint(ckpt: Any, assignment_map: Mapping[str, Any], model: Any) -> Report:
    """Initialise ``model``'s params from ``ckpt`` (a path or an open :class:`~growstage.io.readers.Reader`).

    ``assignment_map``: ``{checkpoint name or scope: target name, scope or Keras variable}``
    with TensorFlow's syntax (``'old_scope/': 'new_scope/'``, ``'old/': '/'``,
    ``'/': 'scope/'``, ``'ckpt/name': 'layer/param'``; see :mod:`growstage.interop.assignment`).
    Returns a :class:`~growstage.Report` with one row per param written (``layer``, ``param``,
    the checkpoint name as ``source``, the seconds it took); raises :class:`~growstage.PlanError`
    listing every problem before writing anything.
    """
    t0 = time.perf_counter()
    reader = ckpt if isinstance(ckpt, Reader) else open_checkpoint(ckpt, model=model)
    targets = _Targets(model)
    chosen: dict[str, str] = {}
    problems: list[str] = []
    for ckpt_name, current in sorted(assignment_map.items(), key=lambda kv: kv[0]):
        if not isinstance(current, str):
            current = getattr(current, "path", None)
            if current is None:
                problems.append(f"assignment_map[{ckpt_name!r}]: give a param name, a scope or a Keras variable")
                continue
        _choose(ckpt_name, current, targets, reader, chosen, problems)
    writes, rows = _writes(chosen, targets, reader, problems)
    if problems:
        raise PlanError(problems)
    if not writes:
        raise GrowstageError("the assignment map selects no variable")
    written = write_all(writes)
    return Report(rows, list(reader.notes), time.perf_counter() - t0, written)


def _writes(chosen: dict[str, str], targets: _Targets, reader: Reader,
            problems: list[str]) -> tuple[list, list[PlanRow]]:
    """``(label, variable, load)`` writes and one plan row per chosen target; mismatches go to ``problems``."""
    writes, rows = [], []
    for name in sorted(chosen):
        ckpt_name, parts = chosen[name], targets.all[name]
        entry = reader[ckpt_name]
        cuts = _slices(parts, entry.shape)
        if cuts is None:
            problems.append(f"{name}: shape {[tuple(p.shape) for p in parts]} does not fit tensor {ckpt_name!r} "
                            f"of shape {entry.shape}")
            continue
        if any(np.dtype(p.dtype) != entry.dtype for p in parts):
            problems.append(f"{name}: dtype {np.dtype(parts[0].dtype)} differs from {entry.dtype} of {ckpt_name!r}")
            continue
        for part, cut in zip(parts, cuts):
            writes.append((part.path, part, _part_loader(reader, ckpt_name, cut)))
        layer, _, param = name.rpartition("/") if "/" in name else (name, "", "")
        rows.append(PlanRow(layer, param, ckpt_name, "copied", entry.shape, entry.shape,
                            reason=f"{len(parts)} parts" if len(parts) > 1 else ""))
    return writes, rows


def _choose(ckpt_name: str, current: str, targets: _Targets, reader: Reader, chosen: dict[str, str],
            problems: list[str]) -> None:
    """Resolve one map entry into ``chosen`` (``{target name: checkpoint name}``) or into ``problems``."""
    name = targets.canonical(current)
    if name is not None and not current.endswith("/"):
        found = _in_reader(ckpt_name, reader)
        if found is None:
            problems.append(f"tensor {ckpt_name!r} is not in {reader.path}{did_you_mean(_strip0(ckpt_name), reader)}")
        else:
            chosen[name] = found
        return
    if not ckpt_name.endswith("/"):
        problems.append(f"{ckpt_name!r}: {current!r} is no param{did_you_mean(_strip0(current), targets.all)}; "
                        "a scope mapping must map a scope to a scope: 'old_scope/': 'new_scope/'")
        return
    scope = "" if current == "/" else current[: current.rindex("/") + 1] if "/" in current else ""
    in_scope = targets.under(scope)
    if not in_scope:
        problems.append(f"{ckpt_name!r}: {current!r} covers no param of the model"
                        f"{did_you_mean(current, _scopes(targets.all))}")
        return
    root = "" if ckpt_name == "/" else ckpt_name
    for gs, rels in in_scope:
        found = next((root + r for r in rels if root + r in reader), None)
        if found is None:
            tried = " or ".join(repr(root + r) for r in rels)
            problems.append(f"tensor {tried} (for {gs!r}) is not in {reader.path}{did_you_mean(root + rels[0], reader)}")
            continue
        chosen[gs] = found


def _part_loader(reader: Reader, name: str, cut: tuple[slice, ...]):
    return lambda: reader.read(name)[cut]
