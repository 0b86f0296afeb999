"""A keras_hub model as a Hugging Face folder: ``config.json`` (the model's own, possibly grown, sizes),
safetensors shards of at most ``max_shard_size`` and ``model.safetensors.index.json``, written into a
temporary folder beside ``out_dir`` and renamed into place, so the folder is complete or absent.

Example::

    >>> parse_size("8KB"), parse_size("2GiB"), parse_size(1000)
    (8000, 2147483648, 1000)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any

import numpy as np

from growstage.core.errors import GrowstageError, StoreError
from growstage.io.hf.common import gather_hf
from growstage.io.readers.hf_folder import INDEX, SINGLE
from growstage.io.readers.hf_presets import PRESETS, family

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_BACKBONES = {"GPT2Backbone": "hf-gpt2", "LlamaBackbone": "hf-llama", "MistralBackbone": "hf-llama",
              "GemmaBackbone": "hf-gemma", "BertBackbone": "hf-bert"}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string as transformers takes it (``"2GB"``: 10**9 bytes, ``"2GiB"``: 2**30)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", size) if isinstance(size, str) else None
    if m is None or m.group(2).upper() not in _UNITS or float(m.group(1)) <= 0:
        raise GrowstageError(f"max_shard_size={size!r}: give a positive int of bytes or a string like '2GB', "
                             "'500MB', '8KB' or '1GiB'")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _preset_of(backbone: Any, preset: str | None) -> str:
    if preset is not None:
        family(preset)
        return preset
    kind = type(backbone).__name__
    if kind not in _BACKBONES:
        raise GrowstageError(f"export_hf: no preset for {kind}; pass preset= (known: {', '.join(PRESETS)})")
    return _BACKBONES[kind]


def hf_tensors(model: Any, preset: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]]:
    """``(config.json, {HF name: array}, notes)`` for a keras_hub backbone or task model; every backbone
    variable must be written, or this fails naming those no rule takes."""
    import keras

    backbone = getattr(model, "backbone", model)
    preset = _preset_of(backbone, preset)
    fam = family(preset)
    config = fam.hf_config(backbone)
    values = {v.path: keras.ops.convert_to_numpy(v) for v in backbone.weights}
    rules = fam.rules(config)
    taken = {r.keras for r in rules}
    left = sorted(set(values) - taken)
    if left:
        raise GrowstageError(f"export_hf({preset}): {len(left)} variables of {type(backbone).__name__} have no "
                             f"place in the HF layout: {', '.join(left[:6])}")
    gone = sorted(r.keras for r in rules if r.keras not in values and r.hf not in fam.TOP)
    if gone:
        raise GrowstageError(f"export_hf({preset}): the model lacks {', '.join(gone[:6])}")
    tensors = {(n if n in fam.TOP else fam.EXPORT_PREFIX + n): a for n, a in gather_hf(rules, values).items()}
    config["dtype"] = str(next(iter(tensors.values())).dtype)
    return config, tensors, []


def _shards(tensors: dict[str, np.ndarray], limit: int) -> list[dict[str, np.ndarray]]:
    """Tensors in order, a new shard whenever the next would pass ``limit`` (a bigger tensor sits alone)."""
    out: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, arr in tensors.items():
        if out[-1] and size + arr.nbytes > limit:
            out.append({})
            size = 0
        out[-1][name] = arr
        size += arr.nbytes
    return out


def _write_folder(tmp: str, config: dict, shards: list[dict[str, np.ndarray]]) -> None:
    from safetensors.numpy import save_file

    names = [SINGLE] if len(shards) == 1 else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                                                for i in range(len(shards))]
    weight_map = {}
    for fname, shard in zip(names, shards):
        save_file(shard, os.path.join(tmp, fname), metadata={"format": "pt"})
        weight_map.update({t: fname for t in shard})
    files = {"config.json": config}
    if len(shards) > 1:
        total = sum(a.nbytes for s in shards for a in s.values())
        files[INDEX] = {"metadata": {"total_size": total}, "weight_map": weight_map}
    for fname, obj in files.items():
        with open(os.path.join(tmp, fname), "w", encoding="utf-8") as fp:
            json.dump(obj, fp, indent=2, sort_keys=True)
    for fname in os.listdir(tmp):  # on disk before the rename makes the folder visible
        fd = os.open(os.path.join(tmp, fname), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def export_hf(model: Any, out_dir: str | os.PathLike, *, preset: str | None = None,
              max_shard_size: int | str = "2GB") -> dict[str, Any]:
    """Write ``model`` (a keras_hub backbone or task model) as a Hugging Face folder that
    ``transformers.AutoModelForCausalLM.from_pretrained(out_dir)`` (or ``AutoModel`` for BERT) loads;
    returns ``{"config": ..., "files": [...], "tensors": n, "bytes": n}``.  ``out_dir`` must not exist.

    Example::

        >>> import keras_hub, os, tempfile
        >>> bb = keras_hub.models.GPT2Backbone(vocabulary_size=8, num_layers=1, num_heads=1, hidden_dim=4,
        ...                                    intermediate_dim=8, max_sequence_length=4)
        >>> out = export_hf(bb, os.path.join(tempfile.mkdtemp(), "hf"), max_shard_size="100B")
        >>> out["config"]["n_layer"], "model.safetensors.index.json" in out["files"]
        (1, True)
    """
    out_dir = os.fspath(out_dir)
    limit = parse_size(max_shard_size)
    if os.path.lexists(out_dir):
        raise StoreError(out_dir, "exists already; export_hf writes a new folder (remove it or choose another)")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise StoreError(out_dir, f"the folder {parent} does not exist")
    config, tensors, _ = hf_tensors(model, preset)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp", dir=parent)
    try:
        _write_folder(tmp, config, _shards(tensors, limit))
        os.rename(tmp, out_dir)  # atomic: a reader sees no folder or the complete one
    except OSError as e:
        raise StoreError(out_dir, f"cannot write it ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(os.listdir(out_dir))
    return {"config": config, "files": files, "tensors": len(tensors),
            "bytes": sum(os.path.getsize(os.path.join(out_dir, f)) for f in files)}
