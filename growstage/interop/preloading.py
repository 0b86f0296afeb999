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
RETURNN checkpoint; it stays open (its owner closes it).  ``only``: target layer names (full names, prefix
included) to load; the entry's other layers are left as they are and reported as
``kept-init`` ("not in only=: untouched").  ``preset``: how a Hugging Face folder's names map to keras_hub's
(``hf-gpt2``, ...; default: its config.json's model_type).  growstage's own keys, so that a checkpoint
can grow as it loads (e.g. at a schedule's first stage): ``mode`` and ``fill`` (as in
:func:`growstage.plan`, for the layers the entry loads) and ``allow_new_layers`` (a target layer
under the entry's prefix of which the file has no param at all is new: it starts as ``fill`` says,
e.g. as the identity under ``preserve``).  Name lists may be one bare name.  All entries form
one transfer: all or nothing.  ``allow_large``: see :func:`growstage.load`.

Strict like the rest of growstage: an ``ignore_params`` name, an
``ignore_params_prefixes`` entry, a ``var_name_mapping`` key, a ``prefix`` or an
``only`` name that matches no param the entry selects is an error naming it
with the closest names; so is a call in which no entry applies (the error
names the ``init_for_train``/``training`` filter) and an entry that loads nothing.

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
from growstage.engine.options import name_list
from growstage.engine.planning import plan_for
from growstage.engine.sources import open_checkpoint
from growstage.io.readers import Reader
from growstage.engine.report import PlanRow, Report
from growstage.engine.writing import apply
from growstage.core.values import Param, Snapshot

ENTRY_KEYS = ("filename", "prefix", "init_for_train", "ignore_missing", "ignore_params",
              "ignore_params_prefixes", "var_name_mapping", "custom_missing_load_func", "only", "preset",
              "mode", "fill", "allow_new_layers")


def _applies(opts: Mapping[str, Any], training: bool, resuming: bool) -> bool:
    if opts.get("init_for_train", False):
        return training and not resuming
    return not training


def _check_entry(entry: str, opts: Mapping[str, Any]) -> None:
    bad = [k for k in opts if k not in ENTRY_KEYS]
    if bad:
        raise GrowstageError(f"preload_from_files[{entry!r}]: unknown key {bad[0]!r}"
                             f"{did_you_mean(bad[0], ENTRY_KEYS)} (keys: {', '.join(ENTRY_KEYS)})")
    if "filename" not in opts:
        raise GrowstageError(f"preload_from_files[{entry!r}] has no 'filename'")


def _entry_options(entry: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's options with its name lists as tuples (a bare name is one name, not its letters)."""
    opts = dict(raw)
    for key in ("ignore_params", "ignore_params_prefixes", "only"):
        if opts.get(key) is not None:
            opts[key] = name_list(opts[key], f"preload_from_files[{entry!r}] {key}")
    return opts


def _open_entry(opts: Mapping[str, Any], model: Any, allow_large: bool, readers: list[Reader]) -> Reader:
    """The entry's reader; those opened here join ``readers`` (closed at the end)."""
    # an open Reader (growstage.returnn.open_returnn: RETURNN names and layouts) stands for a path;
    # it stays open: its owner closes it
    reader = opts["filename"]
    if not isinstance(reader, Reader):
        reader = open_checkpoint(reader, model=model, allow_large=allow_large)
        readers.append(reader)
    return _keras_hub_names(reader, opts.get("preset"), readers)


def _keras_hub_names(reader: Reader, preset: str | None, readers: list[Reader]) -> Reader:
    """A Hugging Face folder read with keras_hub's names (``preset``, or its config.json's model_type)."""
    if reader.format != "hf" or "hf_preset" in reader.meta:
        if preset is not None and reader.format != "hf":
            raise GrowstageError(f"preload: preset={preset!r} applies to Hugging Face folders, not {reader.path}")
        return reader
    from growstage.io.readers.hf_presets import map_reader

    mapped = map_reader(reader, preset)
    if not any(r is reader for r in readers):
        mapped.closer = None  # the caller's open Reader: its owner closes it
    readers.append(mapped)
    return mapped


def _nothing_applies(entries: Mapping[str, Mapping[str, Any]], training: bool) -> GrowstageError:
    """Every entry was skipped by the training state: say which filter did it."""
    names = ", ".join(repr(e) for e in sorted(entries))
    if training:
        return GrowstageError(f"preload: no entry applies: {names} have init_for_train=False, which apply only "
                              "outside training (training=False); set init_for_train=True to load them when "
                              "training starts")
    return GrowstageError(f"preload: no entry applies: {names} have init_for_train=True, which apply only when "
                          "training starts (training=True, resuming=False); pass training=True, or set "
                          "init_for_train=False")


def preload(model: Any, preload_from_files: Mapping[str, Mapping[str, Any]], *, training: bool = False,
            resuming: bool = False, allow_auto_names: bool = False, allow_large: bool = False) -> Report:
    """Load the entries of ``preload_from_files`` that apply now into ``model``, all or nothing.

    Entry keys and their meaning: see :mod:`growstage.interop.preloading` (RETURNN's
    ``preload_from_files``).  ``training``/``resuming`` decide which entries apply:
    ``init_for_train=True`` ones at a fresh training start, the others outside training.
    A call in which no entry applies raises (naming the filter), except with
    ``resuming=True``, where skipping every ``init_for_train`` entry is the point.
    Every name in an option must match something, and an applying entry that loads
    nothing is an error that says which filter removed everything.
    Returns the :class:`~growstage.Report`; params of layers an ``only`` list leaves out
    show as ``kept-init`` ("not in only=: untouched").

    Example::

        >>> import keras, numpy as np, tempfile, os
        >>> x = keras.Input((3,))
        >>> m = keras.Model(x, keras.layers.Dense(2, name="out")(x))
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
        >>> np.savez(path, **{"out/kernel": np.ones((3, 2), "f4"), "out/bias": np.ones(2, "f4")})
        >>> preload(m, {"a": {"filename": path, "ignore_params": ["out/bias"]}}).counts()
        {'copied': 1, 'kept-init': 1, 'ignored': 1}
        >>> preload(m, {"a": {"filename": path, "ignore_params": ["out/bais"]}})
        Traceback (most recent call last):
        growstage.core.errors.PlanError: 1 problem(s) in the transfer plan; nothing was changed:
          - preload 'a': ignore_params 'out/bais' is no param of the layers it selects; did you mean 'out/bias'?
    """
    targets = describe(model, allow_auto_names=allow_auto_names)
    target_keys = {f"{l}/{p.name}": (l, p) for l, info in targets.items() for p in info.params}
    layers: dict[str, dict[str, Param]] = {}
    taken: dict[str, str] = {}
    problems: list[str] = []
    readers: list[Reader] = []
    applying, notes = _applying(preload_from_files, training, resuming)
    only_keys: set[str] = set()
    grow: dict[str, dict] = {"new": {}, "modes": {}, "fills": {}}
    log: dict[str, Any] = {"kept": {}, "origins": {}, "unused": []}  # the report's rows beside the copies
    try:
        for entry in applying:
            opts = _entry_options(entry, preload_from_files[entry])
            reader = _open_entry(opts, model, allow_large, readers)
            n, outside = _plan_entry(entry, opts, reader, target_keys, layers, taken, problems, (grow, log))
            only_keys |= outside
            notes.append(f"preload {entry!r}: {n} params from {reader.path} ({reader.format})")
        if problems:
            raise PlanError(problems)
        if not layers:  # no entry applies now (resuming): nothing to report beside the notes
            return Report(_other_rows(target_keys, taken, only_keys, log) if applying else [], notes)
        p = plan_for(Snapshot(layers), targets, ignore_missing=True, **_growth(grow, layers))
        p.rows = _copied_rows(p.rows, taken, grow["new"], log) + _other_rows(target_keys, taken, only_keys, log)
        p.notes = notes + p.notes
        return apply(p)
    finally:
        for r in readers:
            r.close()


def _applying(entries: Mapping[str, Mapping[str, Any]], training: bool, resuming: bool) -> tuple[list[str], list[str]]:
    """The entries that apply now, in order, and notes on those skipped; an error when none applies."""
    applying, notes = [], []
    for entry in sorted(entries):
        opts = dict(entries[entry])
        _check_entry(entry, opts)
        if _applies(opts, training, resuming):
            applying.append(entry)
        else:
            notes.append(f"preload {entry!r} skipped (init_for_train={opts.get('init_for_train', False)}, "
                         f"training={training}, resuming={resuming})")
    if not applying and entries and not resuming:
        raise _nothing_applies(entries, training)
    return applying, notes


def _copied_rows(rows: list[PlanRow], taken: dict[str, str], new: dict[str, str], log: dict) -> list[PlanRow]:
    """The rows of params an entry sets (or of new layers it grows), each with its checkpoint name and the
    entry's rule; a preset's rows keep the Hugging Face tensor they name."""
    out = [r for r in rows if r.target in taken or r.layer in new]
    for r in out:
        if r.target in log["origins"] and not (r.rule or "").startswith("preset"):
            r.source_name, r.rule = log["origins"][r.target]
    return out


def _other_rows(target_keys: dict, taken: dict[str, str], only_keys: set[str], log: dict) -> list[PlanRow]:
    """What no entry set (kept: ignored, missing, outside only=, selected by no entry) and the checkpoint
    tensors no target param read (unused), as transfer reports them."""
    rows = []
    for key, (lname, spec) in target_keys.items():
        if key in taken:
            continue
        why = "not in only=: untouched" if key in only_keys else log["kept"].get(key, "no preload entry selects it")
        rows.append(PlanRow(lname, spec.name, None, "kept-init", None, spec.shape, reason=why))
    return rows + log["unused"]


def _check_names(entry: str, opts: Mapping[str, Any], target_keys: dict, selected: list[str],
                 problems: list[str]) -> None:
    """Every name in the entry's options must match something it selects."""
    prefix = opts.get("prefix", "") or ""
    layer_names = sorted({l for l, _ in target_keys.values()})
    if prefix and not selected:
        problems.append(f"preload {entry!r}: prefix {prefix!r} selects no target layer{did_you_mean(prefix, layer_names)}")
        return
    for key in opts.get("var_name_mapping") or {}:
        if key not in selected:
            where = "is not a target param" if key not in target_keys else f"is outside prefix {prefix!r}"
            problems.append(f"preload {entry!r}: var_name_mapping key {key!r} {where}{did_you_mean(key, selected)}")
    for name in opts.get("ignore_params") or ():
        if name not in selected:
            problems.append(f"preload {entry!r}: ignore_params {name!r} is no param of the layers it selects"
                            f"{did_you_mean(name, selected)}")
    scopes = sorted({k.rsplit('/', 1)[0] for k in selected} | {k.rsplit('/', 1)[0] + "/" for k in selected})
    for pre in opts.get("ignore_params_prefixes") or ():
        if not any(k.startswith(pre) for k in selected):
            problems.append(f"preload {entry!r}: ignore_params_prefixes {pre!r} is the start of no param it selects"
                            f"{did_you_mean(pre, scopes)}")
    only_layers = sorted({k.rsplit('/', 1)[0] for k in selected})
    for name in opts.get("only") or ():
        if name not in only_layers:
            problems.append(f"preload {entry!r}: only {name!r} is no target layer under prefix {prefix!r}"
                            f"{did_you_mean(name, only_layers)}")


def _growth(grow: dict[str, dict], layers: dict) -> dict[str, Any]:
    """plan_for's options for the entries' ``mode``, ``fill`` and new layers."""
    out: dict[str, Any] = {"modes": grow["modes"], "fills": grow["fills"]}
    if grow["new"]:
        out.update(allow_new_layers=True, only=tuple(sorted(set(layers) | set(grow["new"]))))
    return out


def _plan_entry(entry: str, opts: Mapping[str, Any], reader: Reader, target_keys: dict, layers: dict,
                taken: dict[str, str], problems: list[str], state: tuple[dict, dict]) -> tuple[int, set[str]]:
    """Choose the entry's values; returns how many it set and the keys its ``only`` list left out.
    ``state``: ``grow`` (the entry's new layers and per-layer mode and fill) and ``log`` (why params
    stayed as they were, ``kept``; where each value came from, ``origins``)."""
    grow, log = state
    prefix = opts.get("prefix", "") or ""
    mapping = dict(opts.get("var_name_mapping") or {})
    ignore = set(opts.get("ignore_params") or ())
    ignore_pre = tuple(opts.get("ignore_params_prefixes") or ())
    only = opts.get("only")
    missing_func = opts.get("custom_missing_load_func")
    selected = [k for k in target_keys if k.startswith(prefix)]
    before = len(problems)
    _check_names(entry, opts, target_keys, selected, problems)
    if len(problems) > before:
        return 0, set()
    outside = {k for k in selected if only is not None and target_keys[k][0] not in only}
    count, skipped = 0, {"taken": 0, "ignored": 0}
    present = {target_keys[k][0] for k in selected if mapping.get(k, k[len(prefix):]) in reader}
    passed: dict[str, str] = {}  # checkpoint names this entry passed over, and why
    for key in selected:
        if key in outside:
            passed[mapping.get(key, key[len(prefix):])] = "not in only="
            continue
        if key in taken or key in ignore or key.startswith(ignore_pre):
            skipped["taken" if key in taken else "ignored"] += 1
            passed[mapping.get(key, key[len(prefix):])] = "set by an earlier entry" if key in taken else "ignore_params"
            log["kept"].setdefault(key, f"preload {entry!r}: in ignore_params")
            continue
        lname, spec = target_keys[key]
        ck = mapping.get(key, key[len(prefix):])
        if ck in reader:
            prm = reader.param(ck)
        elif opts.get("allow_new_layers") and lname not in present:
            grow["new"][lname] = entry
            continue
        else:
            value = missing_func(ck, spec.shape, reader) if missing_func is not None else None
            if value is None:
                if not opts.get("ignore_missing", False):
                    problems.append(f"preload {entry!r}: {reader.path} has no {ck!r} for {key}"
                                    f"{did_you_mean(ck, reader)}; set ignore_missing, ignore_params or var_name_mapping")
                log["kept"].setdefault(key, f"preload {entry!r}: missing {ck!r} (ignore_missing)")
                continue
            prm = Param(np.asarray(value))
        layers.setdefault(lname, {})[spec.name] = prm
        taken[key] = entry
        how = "var_name_mapping" if key in mapping else f"prefix {prefix!r}" if prefix else "same name"
        log["origins"][key] = (ck, f"preload {entry!r}: {how}")
        count += 1
    _unused_rows(entry, reader, {log["origins"][k][0] for k, e in taken.items() if e == entry}, passed, log)
    if count == 0 and not opts.get("ignore_missing", False):
        why = (f"ignore_params/ignore_params_prefixes exclude {skipped['ignored']}" if skipped["ignored"] else "")
        if skipped["taken"]:
            why += ("; " if why else "") + f"earlier entries already set {skipped['taken']}"
        problems.append(f"preload {entry!r} loads nothing: of the {len(selected) - len(outside)} params it selects "
                        f"(prefix {prefix!r}, only {only!r}), {why or 'none'}")
    _entry_growth(entry, opts, {target_keys[k][0] for k, e in taken.items() if e == entry}, grow)
    return count, outside


def _entry_growth(entry: str, opts: Mapping[str, Any], loaded: set[str], grow: dict[str, dict]) -> None:
    """The entry's ``mode`` and ``fill`` for the layers it loads and the new layers it owns."""
    for lname in loaded | {l for l, e in grow["new"].items() if e == entry}:
        grow["modes"].update({lname: opts["mode"]} if "mode" in opts else {})
        grow["fills"].update({lname: opts["fill"]} if "fill" in opts else {})


def _unused_rows(entry: str, reader: Reader, read: set[str], passed: dict[str, str], log: dict) -> None:
    """The report's rows for the checkpoint names this entry read nothing from (ignored or unused)."""
    log["unused"] += [PlanRow(None, n, n, "ignored" if n in passed else "unused", tuple(reader[n].shape),
                              reason=f"preload {entry!r}: {passed.get(n, 'no target param reads it')}")
                      for n in reader if n not in read]
