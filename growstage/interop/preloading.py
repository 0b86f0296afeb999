"""``preload``: RETURNN's ``preload_from_files`` on Keras 3 models.

``preload_from_files = {entry: {filename, prefix, init_for_train, ignore_missing,
ignore_params, ignore_params_prefixes, var_name_mapping,
custom_missing_load_func}}``.  Entries are applied in sorted name order; a
param set by an earlier entry is not set again.  An entry with
``init_for_train=True`` applies when training starts from scratch (the first
epoch, not a resume); the default ``False`` applies only outside training.
``prefix`` selects target layers whose name starts with it and strips it to
find the checkpoint name (RETURNN tests a substring; growstage a prefix).
``var_name_mapping``: ``{target layer/param: checkpoint name}``.
``custom_missing_load_func(name, shape, reader)``: a value for a checkpoint
name the file lacks, or None.  ``filename`` may also be an open
:class:`~growstage.Reader`, e.g. ``growstage.returnn.open_returnn(path)`` for a
RETURNN checkpoint.  All entries form one transfer: all or nothing.

Example::

    >>> import keras, numpy as np, tempfile, os, growstage
    >>> x = keras.Input((3,))
    >>> m = keras.Model(x, keras.layers.Dense(2, name="enc_out")(x))
    >>> path = os.path.join(tempfile.mkdtemp(), "old.npz")
    >>> np.savez(path, **{"out/kernel": np.ones((3, 2), "f4"), "out/bias": np.ones(2, "f4")})
    >>> r = preload(m, {"enc": {"filename": path, "prefix": "enc_"}})
    >>> r.counts(), float(m.get_layer("enc_out").bias.numpy()[0])
    ({'copied': 2}, 1.0)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from growstage.framework.adapters.graph import describe
from growstage.core.errors import GrowstageError, PlanError, did_you_mean
from growstage.engine.planning import plan_for
from growstage.engine.sources import open_checkpoint
from growstage.io.readers import Reader
from growstage.engine.report import Report
from growstage.engine.writing import apply
from growstage.core.values import Param, Snapshot

ENTRY_KEYS = ("filename", "prefix", "init_for_train", "ignore_missing", "ignore_params",
              "ignore_params_prefixes", "var_name_mapping", "custom_missing_load_func")


def _applies(opts: Mapping[str, Any], training: bool, resuming: bool) -> bool:
    if opts.get("init_for_train", False):
        return training and not resuming
    return not training


def preload(model: Any, preload_from_files: Mapping[str, Mapping[str, Any]], *, training: bool = False,
            resuming: bool = False, allow_auto_names: bool = False) -> Report:
    """Load the entries of ``preload_from_files`` that apply now into ``model``; see the module doc."""
    targets = describe(model, allow_auto_names=allow_auto_names)
    target_keys = {f"{l}/{p.name}": (l, p) for l, info in targets.items() for p in info.params}
    layers: dict[str, dict[str, Param]] = {}
    taken: dict[str, str] = {}
    notes: list[str] = []
    problems: list[str] = []
    readers: list[Reader] = []
    for entry in sorted(preload_from_files):
        opts = dict(preload_from_files[entry])
        bad = [k for k in opts if k not in ENTRY_KEYS]
        if bad:
            raise GrowstageError(f"preload_from_files[{entry!r}]: unknown key {bad[0]!r}"
                                 f"{did_you_mean(bad[0], ENTRY_KEYS)} (keys: {', '.join(ENTRY_KEYS)})")
        if "filename" not in opts:
            raise GrowstageError(f"preload_from_files[{entry!r}] has no 'filename'")
        if not _applies(opts, training, resuming):
            notes.append(f"preload {entry!r} skipped (init_for_train={opts.get('init_for_train', False)}, "
                         f"training={training}, resuming={resuming})")
            continue
        # an open Reader (growstage.returnn.open_returnn: RETURNN names and layouts) stands for a path
        reader = opts["filename"]
        if not isinstance(reader, Reader):
            reader = open_checkpoint(reader, model=model)
        readers.append(reader)
        n = _plan_entry(entry, opts, reader, target_keys, layers, taken, problems)
        notes.append(f"preload {entry!r}: {n} params from {reader.path} ({reader.format})")
    if problems:
        raise PlanError(problems)
    if not layers:
        return Report([], notes)
    p = plan_for(Snapshot(layers), targets, ignore_missing=True)
    p.rows = [r for r in p.rows if r.target in taken]
    p.notes = notes + p.notes
    try:
        return apply(p)
    finally:
        for r in readers:
            r.close()


def _plan_entry(entry: str, opts: Mapping[str, Any], reader: Reader, target_keys: dict, layers: dict,
                taken: dict[str, str], problems: list[str]) -> int:
    prefix = opts.get("prefix", "") or ""
    mapping = dict(opts.get("var_name_mapping") or {})
    ignore = set(opts.get("ignore_params") or ())
    ignore_pre = tuple(opts.get("ignore_params_prefixes") or ())
    missing_func = opts.get("custom_missing_load_func")
    for key in mapping:
        if key not in target_keys:
            problems.append(f"preload {entry!r}: var_name_mapping key {key!r} is not a target param"
                            f"{did_you_mean(key, target_keys)}")
    selected = [k for k in target_keys if k.startswith(prefix)]
    if prefix and not selected:
        layer_names = sorted({l for l, _ in target_keys.values()})
        problems.append(f"preload {entry!r}: prefix {prefix!r} selects no target layer{did_you_mean(prefix, layer_names)}")
    count = 0
    for key in selected:
        if key in taken or key in ignore or key.startswith(ignore_pre):
            continue
        lname, spec = target_keys[key]
        ck = mapping.get(key, key[len(prefix):])
        if ck in reader:
            prm = reader.param(ck)
        else:
            value = missing_func(ck, spec.shape, reader) if missing_func is not None else None
            if value is None:
                if not opts.get("ignore_missing", False):
                    problems.append(f"preload {entry!r}: {reader.path} has no {ck!r} for {key}"
                                    f"{did_you_mean(ck, reader)}; set ignore_missing, ignore_params or var_name_mapping")
                continue
            prm = Param(np.asarray(value))
        layers.setdefault(lname, {})[spec.name] = prm
        taken[key] = entry
        count += 1
    return count
