"""Presets that read a Hugging Face folder with keras_hub's names and layouts (``hf-gpt2``, ``hf-llama``,
``hf-gemma``, ``hf-bert``).  The per-family tables live in :mod:`growstage.io.hf` (one module per
family, as keras_hub keeps one converter per family); this module only finds the family and wraps the
folder's lazy reader (the family module is imported on first use: a folder of one family never loads
the others' tables).

Example::

    >>> preset_for({"model_type": "mistral"})
    'hf-llama'
    >>> try:
    ...     preset_for({"model_type": "t5"})
    ... except GrowstageError as e:
    ...     print(str(e)[:59])
    config.json model_type 't5' has no growstage preset; known:
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from growstage.core.errors import GrowstageError, StoreError, UnknownNameError
from growstage.io.readers.base import Entry, Reader

PRESETS = {"hf-gpt2": "gpt2", "hf-llama": "llama", "hf-gemma": "gemma", "hf-bert": "bert"}
MODEL_TYPES = {"gpt2": "hf-gpt2", "llama": "hf-llama", "mistral": "hf-llama", "gemma": "hf-gemma",
               "bert": "hf-bert"}


def family(preset: str) -> Any:
    """The module of ``preset``'s family (its rule table, ``differences``, ``hf_config``)."""
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, PRESETS, f"(known: {', '.join(PRESETS)})")
    return importlib.import_module(f"growstage.io.hf.{PRESETS[preset]}")


def preset_for(config: Mapping[str, Any], preset: str | None = None) -> str:
    """``preset`` if given (checked), else the one for config.json's ``model_type``."""
    if preset is not None:
        family(preset)
        return preset
    mtype = config.get("model_type")
    if mtype not in MODEL_TYPES:
        raise GrowstageError(f"config.json model_type {mtype!r} has no growstage preset; known: "
                             f"{', '.join(f'{p} ({t})' for t, p in MODEL_TYPES.items())}; pass preset= for a "
                             "model of the same layout")
    return MODEL_TYPES[mtype]


def _prefix(raw: Reader, anchor: str) -> str:
    found = sorted((n[: -len(anchor)] for n in raw if n == anchor or n.endswith("." + anchor)), key=len)
    if not found:
        raise StoreError(raw.path, f"no tensor named *{anchor}: not a checkpoint of this family")
    return found[0]


def _mapped_entry(raw: Reader, full: str, rule: Any) -> Entry:
    shape = raw[full].shape
    index = rule.index(shape)

    def load(sub: Any) -> Any:
        value = rule.fwd(raw.read(full, index))
        return value if sub is None else value[sub]
    kshape = rule.shape(shape)
    return Entry(kshape, raw[full].dtype, load, source=rule.origin(shape, full[: -len(rule.hf)]),
                 split=rule.split(kshape))


def map_reader(raw: Reader, preset: str | None = None) -> Reader:
    """``raw`` (HF names) as keras_hub names; tensors no rule reads keep their HF names (a plan then
    reports them as having no home), known buffers drop out with a note."""
    config = raw.meta.get("hf_config") or {}
    preset = preset_for(config, preset)
    fam = family(preset)
    notes = list(raw.notes)
    if config.get("model_type") not in fam.MODEL_TYPES:
        notes.append(f"config.json model_type {config.get('model_type')!r} read with preset {preset!r}")
    prefix = _prefix(raw, fam.ANCHOR)
    entries, used, missing = {}, set(), []
    tied = bool(config.get("tie_word_embeddings", preset in ("hf-gpt2", "hf-gemma")))
    for rule in fam.rules(config):
        full = rule.hf if rule.hf in fam.TOP else prefix + rule.hf
        if full not in raw and "LayerNorm." in full:  # old BERT files name LayerNorm params gamma/beta
            full = full.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        if full not in raw:
            if not (rule.hf in fam.TOP and tied):
                missing.append(full)
            continue
        used.add(full)
        entries[rule.keras] = _mapped_entry(raw, full, rule)
    if missing:
        raise StoreError(raw.path, f"{len(missing)} tensors that config.json ({preset}) implies are missing: "
                                   f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    for name in raw:
        if name in used:
            continue
        if name.endswith(tuple(fam.BUFFERS)) or (tied and name == "lm_head.weight"):
            notes.append(f"{name}: not a weight of the keras_hub model (a buffer or the tied output head): dropped")
            continue
        entries[name] = raw.entries[name]
    meta = dict(raw.meta, hf_preset=preset)
    return Reader(raw.path, "hf", entries, notes=notes, meta=meta, closer=raw.close)
