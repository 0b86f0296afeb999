"""Hostile Hugging Face folders (issue 25, item 7), one folder per case; used by benchmarks/hostile.py
and tests/test_hostile_hf.py.  Only json, numpy and os: no torch, no transformers.

``cases(d, secret) -> {name: (folder, expected)}``: expected is ``"refused"`` or ``"loaded"``;
``secret`` is a file outside every case folder that nothing may read.
"""
from __future__ import annotations

import json
import os

import numpy as np


def _st(path: str, header: dict, data: bytes, length: int | None = None) -> None:
    """A safetensors file written by hand: 8-byte header length, JSON header, data."""
    raw = json.dumps(header).encode()
    with open(path, "wb") as fp:
        fp.write((len(raw) if length is None else length).to_bytes(8, "little") + raw + data)


def _good(path: str, name: str) -> None:
    _st(path, {name: {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, np.ones(4, "f4").tobytes())


def _folder(d: str, case: str, weight_map: dict | None = None) -> str:
    """config.json, an index and two sound shards (a: x, b: y); ``weight_map`` overrides the index."""
    f = os.path.join(d, "hf-" + case.replace(" ", "_").replace("/", "").replace(".", ""))
    os.makedirs(f)
    json.dump({"model_type": "gpt2"}, open(os.path.join(f, "config.json"), "w"))
    _good(os.path.join(f, "a.safetensors"), "x")
    _good(os.path.join(f, "b.safetensors"), "y")
    json.dump({"weight_map": weight_map or {"x": "a.safetensors", "y": "b.safetensors"}},
              open(os.path.join(f, "model.safetensors.index.json"), "w"))
    return f


def _cache_layout(d: str) -> str:
    """The HF cache's own layout: snapshots/REV/file -> ../../blobs/HASH inside one repo folder."""
    repo = os.path.join(d, "models--org--tiny")
    src = _folder(d, "cache source")
    os.makedirs(os.path.join(repo, "blobs"))
    snap = os.path.join(repo, "snapshots", "0123abcd")
    os.makedirs(snap)
    for i, name in enumerate(sorted(os.listdir(src))):
        os.rename(os.path.join(src, name), os.path.join(repo, "blobs", f"hash{i}"))
        os.symlink(f"../../blobs/hash{i}", os.path.join(snap, name))
    return snap


def cases(d: str, secret: str) -> dict[str, tuple[str, str]]:
    out = {"hf cache layout": (_cache_layout(d), "loaded"),
           "hf ../ in weight_map": (_folder(d, "up", {"x": "a.safetensors", "y": "../" + os.path.basename(secret)}),
                                    "refused"),
           "hf absolute path": (_folder(d, "abs", {"x": "a.safetensors", "y": os.path.abspath(secret)}), "refused")}
    outside = os.path.join(d, "outside.safetensors")
    _st(outside, {"y": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, open(secret, "rb").read()[:16])
    f = _folder(d, "symlink out")
    os.remove(os.path.join(f, "b.safetensors"))
    os.symlink(outside, os.path.join(f, "b.safetensors"))
    out["hf symlink leaving the folder"] = (f, "refused")
    out["hf tensor missing from shard"] = (_folder(d, "missing", {"x": "a.safetensors", "y": "b.safetensors",
                                                                  "z": "a.safetensors"}), "refused")
    bad_shards = {
        "header beyond file": lambda p: _st(p, {"y": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                                            bytes(16), length=1 << 40),
        "overlapping offsets": lambda p: _st(p, {"y": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                                 "w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
        "out-of-bounds offsets": lambda p: _st(p, {"y": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}},
                                               bytes(16)),
        "undefined dtype": lambda p: _st(p, {"y": {"dtype": "F7", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),
        "fifo shard": os.mkfifo, "directory shard": os.mkdir,
    }
    for name, make in bad_shards.items():
        f = _folder(d, name)
        os.remove(os.path.join(f, "b.safetensors"))
        make(os.path.join(f, "b.safetensors"))
        out[f"hf {name}"] = (f, "refused")
    return out
