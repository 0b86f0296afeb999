"""Which run wrote a ``fit`` checkpoint: resuming someone else's run is an error, not a silent merge.

Every checkpoint ``fit`` writes carries ``meta["run"]``: the schedule's normalised stage specs
(up to the checkpoint's stage), the seed, and a digest of the data (shapes, dtypes and the
first batch's bytes) or, instead of all that, an explicit ``run_id``.  ``resume=True`` compares
them with the run asking to resume and refuses a different run naming the folder and what
differs; nothing is written or removed then.

>>> import numpy as np
>>> a = {"specs": ["2", "3"], "seed": 0, "data": data_digest(np.ones((4, 2)), None, 2), "run_id": None}
>>> differences(a, {**a, "seed": 1})
['seed 0 here, 1 in the checkpoints']
>>> differences(a, dict(a, specs=["2"]))
[]
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np


def _arrays(data: Any) -> list[Any] | None:
    """The arrays of ``x``/``y`` (an array, a list/tuple/dict of them), or None for a dataset or generator."""
    if data is None:
        return []
    if isinstance(data, dict):
        data = [data[k] for k in sorted(data, key=str)]
    if isinstance(data, (list, tuple)):
        found = [_arrays(d) for d in data]
        return None if any(f is None for f in found) else [a for f in found for a in f]
    if hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__"):
        return [data]
    return None


def data_digest(x: Any, y: Any, batch_size: int | None) -> str | None:
    """sha256 of the shapes, dtypes and first batch of ``x`` and ``y``; None when they are not arrays
    (a ``tf.data.Dataset``, a generator: reading them would consume data; pass ``run_id=`` then)."""
    arrays = _arrays([x, y])
    if arrays is None:
        return None
    h = hashlib.sha256()
    try:
        for a in arrays:
            first = np.ascontiguousarray(np.asarray(a[: batch_size or 32]))
            h.update(repr((tuple(int(d) for d in a.shape), str(first.dtype))).encode())
            h.update(first.tobytes())
    except Exception:  # an array-like that numpy cannot take: not comparable, as a dataset
        return None
    return h.hexdigest()[:16]


def run_identity(schedule: Any, seed: int | None, data: str | None, run_id: str | None,
                 last_stage: int) -> dict[str, Any]:
    """What ``fit`` stores in each checkpoint's ``meta["run"]``."""
    # a default repr carries a memory address, different in every process: not part of the identity
    specs = [re.sub(r" at 0x[0-9a-fA-F]+", "", schedule.stage(i).spec_key()) for i in range(last_stage + 1)]
    return {"specs": specs, "seed": seed, "data": data, "run_id": run_id}


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between this run and the one that wrote a checkpoint (their stages beyond
    the checkpoint's are not compared: a run may be extended)."""
    if mine.get("run_id") is not None or theirs.get("run_id") is not None:
        same = mine.get("run_id") == theirs.get("run_id")
        return [] if same else [f"run_id {mine.get('run_id')!r} here, {theirs.get('run_id')!r} in the checkpoints"]
    out = []
    if mine.get("seed") != theirs.get("seed"):
        out.append(f"seed {mine.get('seed')!r} here, {theirs.get('seed')!r} in the checkpoints")
    for i, (a, b) in enumerate(zip(mine.get("specs", []), theirs.get("specs", []))):
        if a != b:
            out.append(f"stage {i} spec {a[:80]} here, {b[:80]} in the checkpoints")
            break
    if None not in (mine.get("data"), theirs.get("data")) and mine.get("data") != theirs.get("data"):
        out.append("the data (shapes, dtypes or first batch) differ")
    return out
