"""Operations on whole checkpoint files: inspect, diff, average, convert.

Each takes paths in any format :func:`growstage.io.readers.open_checkpoint`
reads, streams one tensor at a time, and is what the command line runs.

Example::

    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> for i in (1, 3):
    ...     np.savez(os.path.join(d, f"c{i}.npz"), **{"out/kernel": np.full((2,), i, "f4"), "step": np.int64(i)})
    >>> out = average([os.path.join(d, "c1.npz"), os.path.join(d, "c3.npz")], os.path.join(d, "avg.h5"))
    >>> info = inspect(out)
    >>> [(r["name"], r["shape"]) for r in info["params"]]
    [('out/kernel', [2]), ('step', [])]
    >>> diff(os.path.join(d, "c1.npz"), os.path.join(d, "c3.npz"))["changed"][0]["name"]
    'out/kernel'
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import numpy as np

from growstage.core.errors import GrowstageError, StoreError
from growstage.engine.sources import open_checkpoint
from growstage.io.readers import Reader
from growstage.core.rules import Rules
from growstage.io.outputs import check_output
from growstage.io.store import save
from growstage.core.values import Param, snapshot_from_flat

T = TypeVar("T")


def progress(items: Iterable[T], total: int, label: str, *, stream: Any = None) -> Iterator[T]:
    """Yield ``items``, drawing a ``rich`` progress bar on a terminal (nothing when piped)."""
    stream = stream or sys.stderr
    if total <= 1 or not (hasattr(stream, "isatty") and stream.isatty()):
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=stream, force_terminal=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _stats(arr: np.ndarray) -> dict[str, float]:
    if arr.size == 0:
        return {}
    a = arr.astype(np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
            "nonfinite": int(np.size(a) - np.isfinite(a).sum())}


def inspect(path: str | os.PathLike, *, stats: bool = False, model: Any = None,
            allow_large: bool = False) -> dict[str, Any]:
    """``{"path", "format", "meta", "notes", "params"}``, one params row per tensor: name, shape,
    dtype, bytes (and mean/std/min/max/nonfinite with ``stats``).  ``allow_large``: accept HDF5
    datasets declaring far more bytes than their file holds."""
    with open_checkpoint(path, model=model, allow_large=allow_large) as r:
        rows = []
        for name in progress(list(r), len(r), "inspect"):
            e = r[name]
            row = {"name": name, "shape": list(e.shape), "dtype": str(e.dtype),
                   "bytes": int(np.prod(e.shape, dtype=np.int64)) * e.dtype.itemsize}
            if e.split is not None:
                row["split"] = e.split
            if stats:
                row.update(_stats(r.read(name)))
            rows.append(row)
        return {"path": r.path, "format": r.format, "meta": r.meta, "notes": r.notes, "params": rows}


def diff(a: str | os.PathLike, b: str | os.PathLike, *, model: Any = None,
         allow_large: bool = False) -> dict[str, list]:
    """``{"only_a", "only_b", "reshaped", "changed"}``: what differs between two checkpoints
    (``allow_large`` as in :func:`inspect`)."""
    with open_checkpoint(a, model=model, allow_large=allow_large) as ra, \
            open_checkpoint(b, model=model, allow_large=allow_large) as rb:
        out: dict[str, list] = {"only_a": sorted(set(ra) - set(rb)), "only_b": sorted(set(rb) - set(ra)),
                                "reshaped": [], "changed": []}
        common = [n for n in ra if n in rb]
        for name in progress(common, len(common), "diff"):
            ea, eb = ra[name], rb[name]
            if ea.shape != eb.shape or ea.dtype != eb.dtype:
                out["reshaped"].append({"name": name, "a": [list(ea.shape), str(ea.dtype)],
                                        "b": [list(eb.shape), str(eb.dtype)]})
                continue
            va, vb = ra.read(name), rb.read(name)
            if not np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"):
                delta = np.abs(va.astype(np.float64) - vb.astype(np.float64))
                out["changed"].append({"name": name, "max_abs_diff": float(np.nanmax(delta)) if delta.size else 0.0,
                                       "n_changed": int(np.count_nonzero(va != vb))})
    return out


def average(paths: list[str | os.PathLike], out: str | os.PathLike, *, model: Any = None,
            allow_large: bool = False) -> Path:
    """Average float tensors of several checkpoints into a growstage HDF5 file; integers come from the
    last (``allow_large`` as in :func:`inspect`)."""
    if len(paths) < 1:
        raise GrowstageError("average needs at least one checkpoint")
    check_output(out, paths, suffix_hint=".h5")  # before any reading: OUT must not be an input or a FIFO
    readers: list[Reader] = []
    try:
        for p in paths:
            readers.append(open_checkpoint(p, model=model, allow_large=allow_large))
    except BaseException:
        for r in readers:
            r.close()
        raise
    try:
        names = list(readers[-1])
        for r in readers[:-1]:
            if set(r) != set(names):
                extra, missing = sorted(set(r) - set(names)), sorted(set(names) - set(r))
                raise StoreError(r.path, f"its tensors differ from {readers[-1].path}'s: extra {extra[:5]}, "
                                         f"missing {missing[:5]}; average needs checkpoints of one architecture")
        flat: dict[str, Param] = {}
        for name in progress(names, len(names), "average"):
            last = readers[-1][name]
            for r in readers:
                if r[name].shape != last.shape:
                    raise StoreError(r.path, f"tensor {name!r} has shape {r[name].shape}, {readers[-1].path} has {last.shape}")
            if last.dtype.kind == "f":
                acc = np.zeros(last.shape, np.float64)
                for r in readers:
                    acc += r.read(name)
                value = (acc / len(readers)).astype(last.dtype)
            else:
                value = readers[-1].read(name)
            flat[name] = Param(value, split=last.split, roles=last.roles)
        meta = {"averaged_from": [str(p) for p in paths]}
        return save(snapshot_from_flat(flat, meta=meta), out)
    finally:
        for r in readers:
            r.close()


def convert(src: str | os.PathLike, out: str | os.PathLike, *, rules: Any = None, model: Any = None,
            allow_large: bool = False) -> Path:
    """Any readable checkpoint to a growstage HDF5 file, names renamed by ``rules`` (``allow_large``
    as in :func:`inspect`)."""
    check_output(out, [src], suffix_hint=".h5")
    with open_checkpoint(src, model=model, allow_large=allow_large) as r:
        result = Rules.coerce(rules).apply(list(r))
        flat: dict[str, Param] = {}
        targets = list(result.targets.items())
        for target, name in progress(targets, len(targets), "convert"):
            e = r[name]
            flat[target] = Param(r.read(name), split=e.split, roles=e.roles)
        meta = {"converted_from": str(src), "source_format": r.format}
        return save(snapshot_from_flat(flat, meta=meta, notes=r.notes), out)
