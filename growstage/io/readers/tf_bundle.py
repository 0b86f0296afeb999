"""TensorFlow checkpoints (tensor bundles): TF1 name-based and TF2 object-based.

TF1: names are variable names; slots of TF1 optimizers (``w/Adam``,
``beta1_power``, ``global_step``) are set apart as optimizer state.  Parts of a
partitioned variable stored under their own names (``w/part_0..k``) are
reassembled into ``w``; a ``Saver`` of a partitioned variable already stores
the whole ``w``.  TF2: ``.../.ATTRIBUTES/VARIABLE_VALUE`` keys lose that
suffix and the root attribute; Keras 2 ``layer_with_weights-N`` names become
layer names by structure order of ``model``; optimizer slots are set apart.

Example::

    >>> import tensorflow as tf, tempfile, os
    >>> ck = tf.train.Checkpoint(w=tf.Variable([[1.0, 2.0]]))
    >>> prefix = ck.write(os.path.join(tempfile.mkdtemp(), "ck"))
    >>> r = open_tf_checkpoint(prefix)
    >>> r.format, list(r), r.read("w").tolist()
    ('tf2', ['w'], [[1.0, 2.0]])
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from growstage.core.errors import StoreError
from growstage.io.hdf5_guard import require_regular_file
from growstage.io.optional import require_tensorflow
from growstage.io.readers.base import Entry, Reader, is_numeric, part_groups

_TF2_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_TF1_SLOT = re.compile(r"^(.+)/(Adam|Adam_\d+|Momentum|RMSProp|RMSProp_\d+|Adagrad|Adadelta|Adadelta_\d+|Ftrl|Ftrl_\d+|"
                       r"ExponentialMovingAverage)$")
_TF1_OPT_NAMES = {"global_step", "beta1_power", "beta2_power"}
_LWW = re.compile(r"^(?:(.+)/)?layer_with_weights-(\d+)(/.*)$")


def checkpoint_prefix(path: str) -> str | None:
    """The bundle prefix for a directory, a prefix or a ``.index`` / ``.data`` file; None if not a bundle."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "checkpoint")):
            return None  # (no TensorFlow needed to see that a directory holds no TF checkpoint)
        return state_file_prefix(path)
    if path.endswith(".index") and os.path.exists(path):
        return path[: -len(".index")]
    m = re.match(r"^(.+)\.data-\d+-of-\d+$", path)
    if m and os.path.exists(m.group(1) + ".index"):
        return m.group(1)
    if os.path.exists(path + ".index"):
        return path
    return None


_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"\s*$', re.M)


def state_file_prefix(directory: str) -> str | None:
    """The prefix a TF ``checkpoint`` state file names, read without TensorFlow; None when its index is absent.

    The state file may only name a checkpoint inside its own directory: an absolute path elsewhere or a
    ``../`` path would load some other checkpoint without a word, so it is a :class:`StoreError` naming the
    state file.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "checkpoint"), "w").write('model_checkpoint_path: "../m"')
    >>> try:
    ...     state_file_prefix(d)
    ... except StoreError as e:
    ...     print(e.problem[:48])
    names '../m', outside the checkpoint's directory
    """
    state = os.path.join(directory, "checkpoint")
    require_regular_file(state)
    with open(state, "rb") as fp:
        raw = fp.read(1 << 20)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(state, "a TensorFlow checkpoint state file that is not UTF-8 text: damaged; delete it or "
                                "give the checkpoint prefix itself") from None
    m = _STATE_LINE.search(text)
    if m is None:
        raise StoreError(state, "a TensorFlow checkpoint state file without model_checkpoint_path: damaged; give "
                                "the checkpoint prefix itself")
    name = re.sub(r"\\(.)", r"\1", m.group(1))  # text-proto escapes: \" and \\
    home = os.path.abspath(directory)
    prefix = os.path.normpath(name if os.path.isabs(name) else os.path.join(home, name))
    if not name or os.path.commonpath([home, prefix]) != home or prefix == home:
        raise StoreError(state, f"names {name!r}, outside the checkpoint's directory: refused (a state file may only "
                                "name checkpoints beside it); give that checkpoint's prefix yourself if you mean it")
    return prefix if os.path.exists(prefix + ".index") else None


def _tf_reader(path: str):
    tf = require_tensorflow(f"reading the TensorFlow checkpoint {path}")

    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise StoreError(path, "no TensorFlow checkpoint here (no .index file, and no 'checkpoint' file in a directory)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        return prefix, reader, reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except Exception as e:  # TF raises DataLossError, NotFoundError, OpError, ValueError ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreError(path, f"damaged or unreadable TensorFlow checkpoint ({msg})") from None


def _entry(reader: Any, key: str, shape, dtype) -> Entry:
    def load(index: Any) -> np.ndarray:
        arr = np.asarray(reader.get_tensor(key))
        return arr if index is None else arr[index]

    return Entry(tuple(int(d) for d in shape), np.dtype(dtype.as_numpy_dtype), load, source=key)


def _concat_entry(parts: list[Entry], axis: int) -> Entry:
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)

    def load(index: Any) -> np.ndarray:
        arr = np.concatenate([p.read() for p in parts], axis=axis)
        return arr if index is None else arr[index]

    return Entry(tuple(shape), parts[0].dtype, load, source=",".join(p.source for p in parts))


def _reassemble(entries: dict[str, Entry], notes: list[str]) -> dict[str, Entry]:
    groups = {b: ps for b, ps in part_groups(entries).items() if b not in entries}
    for base, parts in groups.items():
        if sorted(parts) != list(range(len(parts))):
            notes.append(f"{base}: parts {sorted(parts)} are not part_0..part_{len(parts) - 1}; kept as they are")
            continue
        ents = [entries[parts[i]] for i in range(len(parts))]
        shapes = [e.shape for e in ents]
        differ = [a for a in range(len(shapes[0])) if len({s[a] for s in shapes}) > 1]
        if len({len(s) for s in shapes}) > 1 or not shapes[0] or len(differ) > 1:
            notes.append(f"{base}: parts have incompatible shapes {shapes}; kept as they are")
            continue
        axis = differ[0] if differ else 0
        if not differ:
            notes.append(f"{base}: parts have equal shapes, so the file does not tell the axis; assumed axis 0")
        for name in parts.values():
            del entries[name]
        entries[base] = _concat_entry(ents, axis)
        notes.append(f"{base}: reassembled from {len(parts)} parts along axis {axis}")
    return entries


def _map_layer_with_weights(entries: dict[str, Entry], path: str, model: Any, notes: list[str]) -> dict[str, Entry]:
    hits = {n: _LWW.match(n) for n in entries}
    if not any(hits.values()):
        return entries
    indices = sorted({int(m.group(2)) for m in hits.values() if m})
    if model is None:
        raise StoreError(path, "names use Keras 2 'layer_with_weights-N' indices; pass source_model= (a model of the "
                               "architecture that wrote it) to map them to layer names")
    layers = [l for l in model.layers if l.weights]
    if indices[-1] >= len(layers):
        raise StoreError(path, f"the checkpoint has {indices[-1] + 1} layers with weights but the model used to name "
                               f"them has {len(layers)}; pass source_model= a model of the architecture that wrote it")
    from growstage.io.readers.keras_files import k2_param

    out: dict[str, Entry] = {}
    for name, e in entries.items():
        m = hits[name]
        out[f"{layers[int(m.group(2))].name}/{k2_param(m.group(3)[1:])}" if m else name] = e
    notes.append(f"'layer_with_weights-N' mapped to layer names by the structure of model {model.name!r}")
    return out


def open_tf_checkpoint(path: str, *, model: Any = None) -> Reader:
    """Open a TF1 or TF2 checkpoint (directory, prefix or ``.index`` file) lazily."""
    prefix, reader, shapes, dtypes = _tf_reader(str(path))
    tf2 = "_CHECKPOINTABLE_OBJECT_GRAPH" in shapes
    entries: dict[str, Entry] = {}
    optimizer: dict[str, Entry] = {}
    notes: list[str] = []
    for key in sorted(shapes):
        if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
            continue
        try:
            npd = np.dtype(dtypes[key].as_numpy_dtype)
        except (TypeError, KeyError, ValueError):  # variant, resource, string: no numpy dtype (variant: KeyError)
            npd = np.dtype(object)
        if not is_numeric(npd):
            notes.append(f"{key}: {dtypes[key].name} tensor skipped (not numeric)")
            continue
        entry = _entry(reader, key, shapes[key], dtypes[key])
        if tf2:
            if not key.endswith(_TF2_SUFFIX):
                notes.append(f"{key}: skipped (not a variable value)")
                continue
            name = key[: -len(_TF2_SUFFIX)]
            if "/.OPTIMIZER_SLOT/" in name or name.startswith("optimizer/") or name == "save_counter":
                optimizer[name] = entry
                continue
        else:
            name = key
            if name in _TF1_OPT_NAMES or (_TF1_SLOT.match(name) and _TF1_SLOT.match(name).group(1) in shapes):
                optimizer[name] = entry
                continue
        entries[name] = entry
    if tf2:
        entries = _map_layer_with_weights(entries, str(path), model, notes)
        roots = {n.split("/", 1)[0] for n in entries if "/" in n}
        if len(roots) == 1 and all("/" in n for n in entries):
            root = roots.pop()
            entries = {n[len(root) + 1:]: e for n, e in entries.items()}
            notes.append(f"root object {root!r} stripped from the names")
    else:
        entries = _reassemble(entries, notes)
    if optimizer:
        notes.append(f"{len(optimizer)} optimizer tensors set apart (not params)")
    return Reader(prefix, "tf2" if tf2 else "tf1", entries, notes=notes, optimizer=optimizer)
