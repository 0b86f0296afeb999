"""Resolving what a transfer reads: a snapshot, a checkpoint path in any readable format,
a Keras model or a values dict, renamed by rules, edited by ``on_values``, completed by
``custom_missing_load_func``.

Example::

    >>> import numpy as np
    >>> snap = resolve_source({"enc": {"kernel": np.ones((2, 2))}})
    >>> list(apply_rules(snap, {"scopes": {"enc/": "encoder/"}}, ["encoder"]).layers)
    ['encoder']
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from growstage.core.errors import GrowstageError
from growstage.core.rules import Rules
from growstage.io.readers.base import Reader
from growstage.core.values import Param, Snapshot, as_snapshot, snapshot_from_flat

if TYPE_CHECKING:  # the file-only commands (inspect, diff, ...) must not import Keras
    from growstage.framework.adapters.graph import LayerInfo


def _is_keras_model(obj: Any) -> bool:
    return hasattr(obj, "layers") and hasattr(obj, "weights") and hasattr(obj, "get_layer")


def open_checkpoint(path: str | os.PathLike, *, model: Any = None, allow_large: bool = False,
                    preset: str | None = None) -> Reader:
    """Open any checkpoint growstage reads, lazily: names, shapes, dtypes, ``read(name, index)``.

    ``model`` (a model of the architecture that wrote a Keras weight file) names its layers and params.
    ``allow_large`` accepts HDF5 datasets that declare far more bytes than their file holds.  A Hugging
    Face folder lists HF's tensor names; with ``preset=`` (``hf-gpt2``, ``hf-llama``, ``hf-gemma``,
    ``hf-bert``) it lists keras_hub's names and layouts instead.  Any
    failure to read the file is a :class:`~growstage.core.errors.GrowstageError` naming it.

    Example::

        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
        >>> np.savez(path, **{"out/kernel": np.ones((3, 2), "f4")})
        >>> with open_checkpoint(path) as r:
        ...     print(list(r), r["out/kernel"].shape)
        ['out/kernel'] (3, 2)
    """
    from growstage.io.readers import open_checkpoint as open_file

    names = None
    if model is not None:
        from growstage.framework.capture import param_names as names
    reader = open_file(path, model=model, param_names=names, allow_large=allow_large)
    if preset is None:
        return reader
    if reader.format != "hf":
        reader.close()
        raise GrowstageError(f"preset={preset!r}: {os.fspath(path)} is not a Hugging Face folder (config.json "
                             "with model.safetensors or its index); preset= applies to those only")
    from growstage.io.readers.hf_presets import map_reader

    try:
        return map_reader(reader, preset)
    except BaseException:
        reader.close()
        raise


def is_flat_source(source: Any) -> bool:
    """A checkpoint path or an open Reader: flat names, cut into layer/param at the target's layer names."""
    return isinstance(source, (str, os.PathLike, Reader))


def resolve_source(source: Any, *, allow_auto_names: bool = False, naming_model: Any = None,
                   allow_large: bool = False, preset: str | None = None) -> Snapshot:
    """A Snapshot from a Snapshot, an open :class:`Reader` (e.g. ``growstage.returnn.open_returnn``), a
    checkpoint path (any format the readers know, or a ``fit`` checkpoint directory: its latest verified
    ``epoch-NNNN.h5``), a Keras model or a values dict.

    ``naming_model`` names the layers of Keras weight files (see :mod:`growstage.io.readers`).  A Hugging
    Face folder is read with keras_hub's names: ``preset`` (``hf-gpt2``, ...) or its config.json's model_type.
    """
    if preset is not None and not isinstance(source, (str, os.PathLike)):
        raise GrowstageError(f"preset={preset!r} applies to a Hugging Face folder path, not a "
                             f"{type(source).__name__}")
    if isinstance(source, Snapshot):
        return source
    if isinstance(source, Reader):
        return source.to_snapshot()
    if isinstance(source, (str, os.PathLike)):
        from growstage.io.readers import READ_ERRORS, as_store_error

        try:
            return _from_path(source, naming_model, allow_large, preset)
        except GrowstageError:
            raise
        except READ_ERRORS as e:  # whatever a reader lets slip is still an error naming the file
            raise as_store_error(source, e) from None
    if _is_keras_model(source):
        from growstage.framework.capture import snapshot

        return snapshot(source, allow_auto_names=allow_auto_names)
    return as_snapshot(source)


def _from_path(source: str | os.PathLike, naming_model: Any, allow_large: bool, preset: str | None) -> Snapshot:
    from growstage.io.checkpoint_dir import params_only, resolve_training_dir
    from growstage.io.readers import detect_format

    source, note = resolve_training_dir(source)  # a fit checkpoint_dir: its latest verified epoch
    kind = detect_format(source)
    if kind == "growstage":
        from growstage.io.store import load

        snap = params_only(load(source, allow_large=allow_large))
        snap.notes += [note] if note else []
        return snap
    if kind == "hf":  # keras_hub names whether or not preset= is given (config.json's model_type decides)
        from growstage.io.readers.hf_folder import open_hf_folder
        from growstage.io.readers.hf_presets import map_reader

        raw = open_hf_folder(source)
        try:
            return map_reader(raw, preset).to_snapshot()
        except BaseException:
            raw.close()
            raise
    if preset is not None:
        raise GrowstageError(f"preset={preset!r}: {os.fspath(source)} is not a Hugging Face folder (config.json "
                             "with model.safetensors or its index); preset= applies to those only")
    return open_checkpoint(source, model=naming_model, allow_large=allow_large).to_snapshot()


def apply_rules(src: Snapshot, rules: Any, layer_names: Iterable[str]) -> Snapshot:
    """``src`` renamed by :class:`~growstage.core.rules.Rules` and cut at the target's layer names.

    Ignored names drop out (they show in the notes); one source param may feed several targets.
    """
    r = Rules.coerce(rules)
    result = r.apply(src.keys_flat())
    flat = src.flat()
    notes = list(src.notes)
    if result.ignored:
        notes.append(f"{len(result.ignored)} source params dropped by ignore rules")
    out = snapshot_from_flat({t: flat[s] for t, s in result.targets.items()}, layer_names, meta=src.meta, notes=notes)
    out.path, out.closer = src.path, src.closer
    # what the report shows beside each row: the tensor's own name and the rule that renamed it
    for t, s in result.targets.items():
        own, earlier = src.origins.get(s, (s, None))  # a reader may have renamed it already (a preset)
        rule = f"rules: {result.log[t]}" if result.log.get(t) != "unchanged" else None
        if rule or earlier:
            out.origins[t] = (own, "; ".join(x for x in (earlier, rule) if x))
    return out


def edit_values(src: Snapshot, on_values: Callable) -> Snapshot:
    values = src.values_dict()
    edited = on_values(values)
    if edited is None:
        edited = values
    layers: dict[str, dict[str, Param]] = {}
    for lname, params in edited.items():
        layers[lname] = {}
        for pname, arr in params.items():
            arr = np.asarray(arr)
            old = src.layers.get(lname, {}).get(pname)
            keep = old is not None and old.shape == arr.shape
            layers[lname][pname] = Param(arr, split=old.split if keep else None, roles=old.roles if keep else None)
    return Snapshot(layers, meta=src.meta, notes=src.notes, path=src.path, closer=src.closer, origins=src.origins)


def load_missing(src: Snapshot, targets: dict[str, LayerInfo], source_layer_of: Callable[[str], str | None],
                  func: Callable[[str, tuple, Any], Any]) -> Snapshot:
    """Ask ``func(name, shape, reader)`` for every target param the source lacks (RETURNN's hook)."""
    from growstage.io.readers import from_snapshot

    reader = from_snapshot(Snapshot(src.layers, meta={}), src.path or "<source>")
    layers = {l: dict(ps) for l, ps in src.layers.items()}
    notes = list(src.notes)
    for lname, info in targets.items():
        src_lname = source_layer_of(lname)
        if src_lname is None:
            continue
        for spec in info.params:
            if spec.name in layers.get(src_lname, {}):
                continue
            value = func(f"{lname}/{spec.name}", spec.shape, reader)
            if value is not None:
                layers.setdefault(src_lname, {})[spec.name] = Param(np.asarray(value))
                notes.append(f"{lname}/{spec.name}: value from custom_missing_load_func")
    return Snapshot(layers, meta=src.meta, notes=notes, path=src.path, closer=src.closer, origins=src.origins)
