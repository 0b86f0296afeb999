"""Training checkpoints: params, optimizer state and schedule position in one
growstage HDF5 file per epoch (atomic), keeping the last N, and finding the
latest complete one.

Optimizer slots live beside the params under ``@optimizer/<layer>`` with param
names ``<param>#<slot family>``; the iteration count under ``@optimizer``.

Example::

    >>> import keras, tempfile
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="out")])
    >>> m.compile(optimizer="sgd", loss="mse")
    >>> d = tempfile.mkdtemp()
    >>> p = write_checkpoint(d, m, epoch=0, stage=0)
    >>> latest_checkpoint(d)[1].meta["epoch"]
    0
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from growstage.framework.optimizer import ensure_built, optimizer_state
from growstage.io.checkpoint_dir import (OPTIMIZER_SCOPE, checkpoint_path, latest_checkpoint, list_checkpoints,
                                        save_checkpoint)
from growstage.framework.capture import device_value, snapshot
from growstage.framework.device_values import on_mesh
from growstage.core.values import Param, Snapshot

OPT = OPTIMIZER_SCOPE
__all__ = ["OPT", "checkpoint_path", "latest_checkpoint", "list_checkpoints", "split_checkpoint", "write_checkpoint"]


def write_checkpoint(directory: str | os.PathLike, model: Any, *, epoch: int, stage: int, keep: int = 3,
                     meta: dict | None = None, allow_auto_names: bool = False) -> Path:
    """Atomically write epoch ``epoch``'s checkpoint and drop all but the newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    snap = snapshot(model, allow_auto_names=allow_auto_names)
    # a model laid out over a keras.distribution mesh: a sharded folder, each device writing its shards
    sharded = on_mesh(model.weights)
    layers = dict(snap.layers)
    if getattr(model, "optimizer", None) is not None:
        ensure_built(model)
        state = optimizer_state(model, allow_auto_names=allow_auto_names, device=sharded)
        layers[OPT] = {"iterations": Param(np.array(state["iterations"], dtype=np.int64))}
        for lname, params in state["slots"].items():
            layers[f"{OPT}/{lname}"] = {
                f"{pname}#{fam}": Param(device_value(arr), split=snap.layers[lname][pname].split)
                for pname, fams in params.items() for fam, arr in fams.items()}
        meta = {**(meta or {}), "optimizer": state["class"]}
    return save_checkpoint(directory, Snapshot(layers, meta={**snap.meta, **(meta or {}), "epoch": epoch,
                                                             "stage": stage}), epoch=epoch, keep=keep,
                           sharded=sharded)


def split_checkpoint(snap: Snapshot) -> tuple[Snapshot, dict | None]:
    """Separate a checkpoint into the params snapshot and the optimizer state."""
    params = {k: v for k, v in snap.layers.items() if not k.startswith(OPT)}
    if OPT not in snap.layers:
        return Snapshot(params, meta=snap.meta), None
    slots: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for k, v in snap.layers.items():
        if k.startswith(OPT + "/"):
            lname = k[len(OPT) + 1:]
            for key, prm in v.items():
                pname, fam = key.rsplit("#", 1)
                # a sharded folder's slots stay lazy: each device reads its own region on resume
                slots.setdefault(lname, {}).setdefault(pname, {})[fam] = \
                    prm.value if hasattr(prm.value, "read_region") else prm.read()
    state = {"iterations": int(snap.layers[OPT]["iterations"].read()), "slots": slots,
             "class": snap.meta.get("optimizer")}
    return Snapshot(params, meta=snap.meta), state
