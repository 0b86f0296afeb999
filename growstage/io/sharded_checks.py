"""What a sharded snapshot's reader and writer check before they trust a folder (issue 28, hostile round).

The index's structure CRC catches accidents, not someone who edits ``index.json`` and recomputes it,
so the reader also checks that the index *makes sense* before any block is read or any array is
allocated: every field has its type (ints are ints, not ``"4"``, ``4.5`` or ``true``), dtypes are the
numeric ones the writer stores, names are unique, and each param's blocks tile its shape exactly
(inside it, no overlap, no hole): an overlap that hides a hole would otherwise hand out
uninitialised memory.  Shard files must be regular files directly in the folder (no symlink out of
it, no FIFO that would block the reader forever).  The writer replaces an existing folder only when
it holds a growstage sharded snapshot and nothing else.

The io layer: plain file I/O, JSON and numpy, no framework.

>>> check_tiling("f", "w", (4, 8), [[[0, 4], [0, 4]], [[0, 4], [4, 8]]])
>>> try:
...     check_tiling("f", "w", (4, 8), [[[0, 4], [0, 4]], [[0, 4], [0, 4]]])
... except StoreError as e:
...     print(e.problem[:36])
the blocks of w overlap or leave a h
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from typing import Any

import numpy as np

from growstage.core.errors import StoreError

# the dtypes the writer stores natively, by their safetensors names; others (bfloat16) go as raw bytes
ST_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16",
             "int32": "I32", "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32",
             "uint64": "U64", "bool": "BOOL"}
RAW_DTYPES = {"bfloat16"}
SHARD_NAME = re.compile(r"^(device-\d{5,}|host)\.safetensors$")
_CELLS_PER_BLOCK = 4  # the writer's blocks form a grid (one cell each); a few more cells allow other tilings


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def regular_file(folder: str, name: Any, what: str) -> str:
    """``folder/name`` when it is a regular file directly in ``folder`` (not a link, FIFO or folder)."""
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        raise StoreError(folder, f"index names the file {name!r}: not a {what} of this folder (damaged or edited)")
    path = os.path.join(folder, name)
    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        raise StoreError(folder, f"{what} {name} is missing ({e.strerror or e}): incomplete or damaged") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file (a FIFO, folder or device)"
        raise StoreError(folder, f"{what} {name} is {kind}: refused, a snapshot's files are plain files "
                                 "inside its folder (copy the real files in)")
    return path


def check_tiling(folder: str, label: str, shape: tuple[int, ...], bounds: list) -> None:
    """Refuse blocks that do not tile ``shape`` exactly: each inside it, no overlap, no hole."""
    cuts = [sorted({0, d} | {b[a][0] for b in bounds} | {b[a][1] for b in bounds}) for a, d in enumerate(shape)]
    cells = math.prod(len(c) - 1 for c in cuts)
    total = math.prod(shape)
    volume = sum(math.prod(hi - lo for lo, hi in b) for b in bounds)
    bad = volume != total or (total > 0 and cells > _CELLS_PER_BLOCK * len(bounds) + 64)
    if not bad and total > 0:
        count = np.zeros([len(c) - 1 for c in cuts], np.int64)
        at = [{v: i for i, v in enumerate(c)} for c in cuts]  # dicts: a million blocks stay linear
        for b in bounds:
            count[tuple(slice(p[lo], p[hi]) for (lo, hi), p in zip(b, at))] += 1
        bad = bool((count != 1).any())
    if bad:
        raise StoreError(folder, f"the blocks of {label} overlap or leave a hole in its shape {tuple(shape)}: "
                                 "damaged or edited index")


def _check_block(folder: str, label: str, shape: tuple[int, ...], b: Any, files: set) -> list:
    ok = (isinstance(b, dict) and isinstance(b.get("key"), str) and _int(b.get("crc32")) and _int(b.get("nbytes"))
          and isinstance(b.get("raw"), bool) and isinstance(b.get("bounds"), list) and len(b["bounds"]) == len(shape)
          and all(isinstance(x, list) and len(x) == 2 and _int(x[0]) and _int(x[1]) and 0 <= x[0] <= x[1] <= d
                  for x, d in zip(b["bounds"], shape)))
    if not ok:
        raise StoreError(folder, f"a block of {label} is {json.dumps(b)[:200]}: not a block of its shape "
                                 f"{tuple(shape)} (file, key, bounds inside the shape, crc32, nbytes, raw): "
                                 "damaged or edited index")
    if not isinstance(b.get("file"), str) or b["file"] not in files:  # each file once, however many blocks
        regular_file(folder, b.get("file"), "shard file")
        files.add(b["file"])
    if not SHARD_NAME.match(b["file"]):
        raise StoreError(folder, f"index names the file {b['file']!r}: not a shard name (device-NNNNN or host "
                                 ".safetensors): damaged or edited index")
    return [tuple(x) for x in b["bounds"]]


def check_entry(folder: str, e: Any, seen: set, files: set) -> None:
    """Refuse an index entry whose fields, names, dtype, shape or blocks are not what the writer writes."""
    if not (isinstance(e, dict) and isinstance(e.get("layer"), str) and isinstance(e.get("param"), str)):
        raise StoreError(folder, f"index entry {json.dumps(e)[:120]} has no layer and param names: damaged or edited")
    label = f"{e['layer']}/{e['param']}"
    if (e["layer"], e["param"]) in seen:
        raise StoreError(folder, f"param {label} appears twice in the index: damaged or edited")
    seen.add((e["layer"], e["param"]))
    shape = e.get("shape")
    if not (isinstance(shape, list) and all(_int(d) and d >= 0 for d in shape)):
        raise StoreError(folder, f"shape of {label} is {shape!r}, not a list of sizes: damaged or edited index")
    if e.get("dtype") not in ST_DTYPES and e.get("dtype") not in RAW_DTYPES:
        raise StoreError(folder, f"dtype of {label} is {e.get('dtype')!r}, not one a sharded snapshot stores "
                                 f"({', '.join(sorted(ST_DTYPES) + sorted(RAW_DTYPES))}): damaged or edited index")
    if not isinstance(e.get("trainable"), bool):
        raise StoreError(folder, f"'trainable' of {label} is {e.get('trainable')!r}, not true/false: damaged or edited")
    from growstage.io.store import check_split_roles

    check_split_roles(e.get("split"), e.get("roles"), len(shape), folder, label)
    if not isinstance(e.get("blocks"), list):
        raise StoreError(folder, f"param {label} has no list of blocks: damaged or edited index")
    bounds = [_check_block(folder, label, tuple(shape), b, files) for b in e["blocks"]]
    check_tiling(folder, label, tuple(shape), bounds)


def stored_matches(folder: str, label: str, b: dict, dtype_name: str, block_shape: tuple[int, ...],
                   header: Any) -> None:
    """Refuse a block whose stored tensor (its safetensors header: nothing read yet) is not the block."""
    got_shape, got_dtype = tuple(header.get_shape()), header.get_dtype()
    if b["raw"]:  # bfloat16 and friends: their bytes as uint8
        want = (math.prod(block_shape) * (2 if dtype_name in RAW_DTYPES else 0), "U8")
    else:
        want = (math.prod(block_shape), ST_DTYPES.get(dtype_name))
    # the element count, not the shape: a scalar optimizer step is stored as one element
    if (math.prod(got_shape), got_dtype) != want:
        raise StoreError(folder, f"block of {label} in {b['file']} holds {got_dtype} {list(got_shape)}, the index "
                                 f"says {want[0]} entries of {want[1]}: damaged or edited")


def replaceable(path: str, is_index: Any) -> None:
    """Refuse to replace ``path`` unless it is a sharded snapshot folder holding nothing but its own files."""
    if not os.path.isdir(path):
        raise StoreError(path, "exists and is not a sharded growstage snapshot: not replaced; give a new folder name")
    names = os.listdir(path)
    foreign = sorted(n for n in names if n != "index.json" and not SHARD_NAME.match(n))
    if "index.json" not in names or not is_index(os.path.join(path, "index.json")) or foreign:
        why = f" (it also holds {', '.join(foreign[:5])})" if foreign else ""
        raise StoreError(path, f"exists and is not a sharded growstage snapshot{why}: not replaced; give a new "
                               "folder name")
