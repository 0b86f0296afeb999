"""``init_from_checkpoint`` with TensorFlow's assignment-map semantics, on Keras 3 models.

Targets are named by their Keras variable paths (``dense/kernel``,
``blstm/forward_lstm/lstm_cell/kernel``; layers a ``Sequential`` builds
carry the model's name in front: ``sequential/dense/kernel``).  The map, applied in sorted order
of checkpoint names (a later entry wins for a variable both set):

- ``'ckpt/name': 'var/path'``: one tensor into one variable (or into the
  parts ``var/path/part_0..k`` of a partitioned target, sliced along the axis
  the parts split);
- ``'old_scope/': 'new_scope/'``: every variable under ``new_scope/`` from the
  tensor of the same relative name under ``old_scope/``;
- ``'/': 'scope/'``: every variable under ``scope/`` from the root of the
  checkpoint; ``'old/': '/'``: every variable from ``old/``.

Unlike TensorFlow, a scope entry that covers no variable is an error, every
problem is reported at once, and a failed write restores every variable.

Example::

    >>> import keras, numpy as np, tempfile, os
    >>> x = keras.Input((3,))
    >>> src = keras.Model(x, keras.layers.Dense(2, name="enc")(x))
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, **{"old/enc/kernel": np.ones((3, 2), "f4"), "old/enc/bias": np.ones(2, "f4")})
    >>> r = init_from_checkpoint(path, {"old/": "/"}, src)
    >>> [(x.param, x.source) for x in r.rows]
    [('enc/bias', 'old/enc/bias'), ('enc/kernel', 'old/enc/kernel')]
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from growstage.core.errors import GrowstageError, PlanError, did_you_mean
from growstage.engine.sources import open_checkpoint
from growstage.io.readers import Reader
from growstage.io.readers.base import part_groups
from growstage.engine.report import PlanRow
from growstage.engine.report import Report
from growstage.engine.writing import write_all

def _variables(model: Any) -> dict[str, list[Any]]:
    """``{name: [variable]}``; a partitioned target ``w/part_0..k`` becomes ``{'w': [parts]}``."""
    by_path = {v.path: v for v in model.variables}
    groups = part_groups(by_path)
    in_parts = {n for ps in groups.values() for n in ps.values()}
    out = {path: [v] for path, v in by_path.items() if path not in in_parts}
    out.update({base: [by_path[ps[i]] for i in sorted(ps)] for base, ps in groups.items()})
    return out


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
    """Initialise ``model``'s variables from ``ckpt`` (a path or an open :class:`~growstage.io.readers.Reader`).

    Returns a :class:`~growstage.Report` with one row per variable written;
    raises :class:`~growstage.PlanError` listing every problem before writing
    anything.
    """
    reader = ckpt if isinstance(ckpt, Reader) else open_checkpoint(ckpt, model=model)
    store = _variables(model)
    chosen: dict[str, str] = {}
    problems: list[str] = []
    for ckpt_name, current in sorted(assignment_map.items(), key=lambda kv: kv[0]):
        if not isinstance(current, str):
            current = getattr(current, "path", None)
            if current is None:
                problems.append(f"assignment_map[{ckpt_name!r}]: give a variable path or a Keras variable")
                continue
        if current in store:
            if ckpt_name not in reader:
                problems.append(f"tensor {ckpt_name!r} is not in {reader.path}{did_you_mean(ckpt_name, reader)}")
                continue
            chosen[current] = ckpt_name
            continue
        scopes = current[: current.rindex("/")] if "/" in current else ""
        if not ckpt_name.endswith("/"):
            problems.append(f"{ckpt_name!r}: {current!r} is no variable{did_you_mean(current, store)}; a scope mapping "
                            "must map a scope to a scope: 'old_scope/': 'new_scope/'")
            continue
        in_scope = sorted(n for n in store if not scopes or n.startswith(scopes + "/"))
        if not in_scope:
            problems.append(f"{ckpt_name!r}: {current!r} covers no variable of the model{did_you_mean(current, store)}")
            continue
        for var_name in in_scope:
            full = var_name[len(scopes):]
            if current != "/":
                full = full[1:]
            if ckpt_name != "/":
                full = ckpt_name + full
            if full.endswith("/"):
                full = full[:-1]
            if full not in reader:
                problems.append(f"tensor {full!r} (for {var_name!r}) is not in {reader.path}{did_you_mean(full, reader)}")
                continue
            chosen[var_name] = full
    writes, rows = _writes(chosen, store, reader, problems)
    if problems:
        raise PlanError(problems)
    if not writes:
        raise GrowstageError("the assignment map selects no variable")
    written = write_all(writes)
    return Report(rows, list(reader.notes), 0.0, written)


def _writes(chosen: dict[str, str], store: dict[str, list[Any]], reader: Reader,
            problems: list[str]) -> tuple[list, list[PlanRow]]:
    """``(label, variable, load)`` writes and one plan row per chosen variable; mismatches go to ``problems``."""
    writes, rows = [], []
    for var_name in sorted(chosen):
        ckpt_name, parts = chosen[var_name], store[var_name]
        entry = reader[ckpt_name]
        cuts = _slices(parts, entry.shape)
        if cuts is None:
            problems.append(f"{var_name}: shape {[tuple(p.shape) for p in parts]} does not fit tensor {ckpt_name!r} "
                            f"of shape {entry.shape}")
            continue
        if any(np.dtype(p.dtype) != entry.dtype for p in parts):
            problems.append(f"{var_name}: dtype {np.dtype(parts[0].dtype)} differs from {entry.dtype} of {ckpt_name!r}")
            continue
        for part, cut in zip(parts, cuts):
            writes.append((part.path, part, _part_loader(reader, ckpt_name, cut)))
        rows.append(PlanRow("", var_name, ckpt_name, "copied", entry.shape, entry.shape,
                            reason=f"{len(parts)} parts" if len(parts) > 1 else ""))
    return writes, rows


def _part_loader(reader: Reader, name: str, cut: tuple[slice, ...]):
    return lambda: reader.read(name)[cut]
