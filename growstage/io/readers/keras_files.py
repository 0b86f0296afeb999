"""Keras weight files: Keras 3 ``.weights.h5`` and ``.keras``, legacy Keras 2 ``.h5``.

Keras 3 stores a layer under its class name plus a counter
(``layers/dense_1/vars/0``); recent Keras also writes the layer's name as an
attribute of its ``vars`` group, which is used when present.  Otherwise the
counter names come from walking ``model`` (a model of the architecture that
wrote the file) the way Keras does.  A variable index inside a layer becomes a
growstage param name (``cell/kernel``) by asking that model's layer of the same
name which variable Keras stores at that index.  Keras 2 files store
variable names (``blstm/forward_lstm/lstm_cell/kernel:0``), which are turned
into attribute paths (``forward_layer/cell/kernel``).

Example::

    >>> import keras, tempfile, os
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.weights.h5")
    >>> m.save_weights(path)
    >>> with open_keras_weights(path, model=m) as r:
    ...     print(sorted(r), r.format)
    ['out/bias', 'out/kernel'] keras3
"""
from __future__ import annotations

import io
import re
import os
import zipfile
import zlib
from typing import Any, Callable

import h5py
import numpy as np

from growstage.core.naming import snake_case
from growstage.core.errors import StoreError
from growstage.io.hdf5_guard import read_zip_member, refuse_risky, require_regular_file
from growstage.io.store import check_storage
from growstage.io.readers.base import Entry, Reader, is_numeric

ParamNames = Callable[[Any], dict[int, str]]


def _counter_names(layers: list[Any]) -> dict[str, Any]:
    """Keras 3's file keys for a list of layers: class name in snake case plus a counter."""
    used: dict[str, int] = {}
    out = {}
    for layer in layers:
        base = snake_case(type(layer).__name__)
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        out[key] = layer
    return out


def _ds_entry(ds: h5py.Dataset, path: str, label: str) -> Entry:
    if not is_numeric(ds.dtype):
        raise StoreError(path, f"tensor {label} has dtype {ds.dtype}, not a numeric type")

    def load(index: Any) -> np.ndarray:
        check_storage(ds, path, label)
        return ds[()] if index is None else ds[index]

    return Entry(tuple(int(d) for d in ds.shape), ds.dtype, load, source=ds.name)


def _own_variable_names(layer: Any, rel: str, param_names: ParamNames | None) -> dict[str, str]:
    """``{"cell/vars/0": "cell/kernel", ...}`` for the sub-object path of ``rel`` inside ``layer``;
    ``param_names(layer)`` gives ``{id(variable): param name}`` (the framework layer knows them)."""
    if param_names is None:
        return {}
    attrs = rel.split("/")[:-2]
    obj = layer
    for a in attrs:
        obj = getattr(obj, a, None)
        if obj is None:
            return {}
    record: dict[str, Any] = {}
    try:
        obj.save_own_variables(record)
    except Exception:
        return {}
    by_id = param_names(layer)
    prefix = "/".join(attrs + ["vars"])
    return {f"{prefix}/{k}": by_id[id(v)] for k, v in record.items() if id(v) in by_id}


# Param names by variable index for common Keras 3 classes, used when no model names a layer;
# only applied when the layer stores exactly this many variables.
_DEFAULT_VARS = {
    **{k: ("kernel", "bias") for k in ("dense", "einsum_dense", "conv1d", "conv2d", "conv3d")},
    "embedding": ("embeddings",), "layer_normalization": ("gamma", "beta"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "cell": ("kernel", "recurrent_kernel", "bias"),
}
_MHA_ATTRS = {"query_dense": "query", "key_dense": "key", "value_dense": "value", "output_dense": "attention_output"}


def _default_names(key: str, rels: list[str]) -> dict[str, str]:
    """Names for a layer's datasets from its class key alone (``dense_2`` -> kernel, bias)."""
    groups: dict[str, list[str]] = {}
    for rel in rels:
        groups.setdefault(rel.rsplit("/vars/", 1)[0] if "/vars/" in rel else "", []).append(rel)
    out = {}
    for owner, members in groups.items():
        last = owner.rsplit("/", 1)[-1] if owner else re.sub(r"_\d+$", "", key)
        kind = "dense" if last in _MHA_ATTRS else last
        names = _DEFAULT_VARS.get(kind)
        if names is None or len(names) != len(members):
            return {}
        prefix = "/".join(_MHA_ATTRS.get(c, c) for c in owner.split("/")) + "/" if owner else ""
        for rel in members:
            out[rel] = prefix + names[int(rel.rsplit("/", 1)[1])]
    return out


def _find_nested(model: Any, name: str) -> Any:
    """The layer called ``name`` anywhere inside ``model``'s nested models (file layers seen from a parent model)."""
    for layer in getattr(model, "layers", None) or []:
        if layer.name == name:
            return layer
        found = _find_nested(layer, name) if hasattr(layer, "layers") else None
        if found is not None:
            return found
    return None


def _walk_keras3(g: h5py.Group, path: str, model: Any, prefix: str, entries: dict[str, Entry], notes: list[str],
                 param_names: ParamNames | None) -> None:
    sub_layers = list(getattr(model, "layers", []) or [])
    by_counter = _counter_names(sub_layers)
    by_name = {l.name: l for l in sub_layers}
    for key, lg in g.items():
        if not isinstance(lg, h5py.Group):
            continue
        name = lg["vars"].attrs.get("name") if isinstance(lg.get("vars"), h5py.Group) else None
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        layer = (by_name.get(name) or _find_nested(model, name)) if name else by_counter.get(key)
        if not name:
            if layer is None:
                raise StoreError(path, f"layer group {prefix}{key!r} has no name attribute and no layer of the naming "
                                       "model maps to it; pass source_model= (a model of the architecture that wrote "
                                       "the file) to map file keys to layer names")
            name = layer.name
        if isinstance(lg.get("layers"), h5py.Group):
            _walk_keras3(lg["layers"], path, layer, f"{prefix}{name}/", entries, notes, param_names)
            continue
        datasets: list[tuple[str, h5py.Dataset]] = []
        lg.visititems(lambda rel, obj: datasets.append((rel, obj)) if isinstance(obj, h5py.Dataset) else None)
        named = layer is not None and param_names is not None
        names = (_own_variable_names(layer, datasets[0][0], param_names) if named
                 else _default_names(key if layer is None else snake_case(type(layer).__name__),
                                     [rel for rel, _ in datasets])) if datasets else {}
        for rel, ds in datasets:
            if rel not in names and named:
                names.update(_own_variable_names(layer, rel, param_names))
            pname = names.get(rel)
            if pname is None:
                pname = rel
                unnamed = (f"{prefix}{name}: params keep their file keys (vars/N); pass a model with a layer of "
                           "that name to name them")
                if unnamed not in notes:
                    notes.append(unnamed)
            key = f"{prefix}{name}/{pname}"
            if key in entries:
                raise StoreError(path, f"two tensors are both named {key!r} (layer name {name!r} twice)")
            entries[key] = _ds_entry(ds, path, f"{prefix}{name}/{rel}")


# Keras 2 attribute names (TF2 object-based checkpoints) of sub-layers growstage names otherwise
_K2_ATTRS = {"_query_dense": "query", "_key_dense": "key", "_value_dense": "value",
             "_output_dense": "attention_output"}


def k2_param(rest: str) -> str:
    """A Keras 2 variable or attribute path inside a layer as a growstage param name.

    >>> k2_param("forward_lstm/lstm_cell/kernel"), k2_param("_query_dense/bias")
    ('forward_layer/cell/kernel', 'query/bias')
    """
    comps = [_K2_ATTRS.get(c, c) for c in rest.split("/")]
    if len(comps) > 1 and comps[0].startswith(("forward_", "backward_")):
        comps[0] = comps[0].split("_", 1)[0] + "_layer"
    return "/".join("cell" if c.endswith("_cell") and i < len(comps) - 1 else c for i, c in enumerate(comps))


def _strs(values: Any) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _walk_keras2(root: h5py.Group, path: str, entries: dict[str, Entry]) -> None:
    for lname in _strs(root.attrs["layer_names"]):
        g = root[lname]
        for wn in _strs(g.attrs.get("weight_names", [])):
            base = wn[:-2] if wn.endswith(":0") else wn
            if base.startswith(lname + "/"):
                key = f"{lname}/{k2_param(base[len(lname) + 1:])}"
            else:  # a nested model: the weight name starts with the inner layer's name
                inner, _, rest = base.partition("/")
                key = f"{lname}/{inner}/{k2_param(rest)}"
            entries[key] = _ds_entry(g[wn], path, wn)


def _open_h5(path: str, source: Any, allow_large: bool = False) -> h5py.File:
    if isinstance(source, (str, os.PathLike)):
        require_regular_file(str(source))
    try:
        f = h5py.File(source, "r")
    except Exception as e:
        raise StoreError(path, f"not a readable HDF5 file ({e})") from None
    try:
        refuse_risky(f, path, allow_large=allow_large, source=source)
    except BaseException:
        f.close()
        raise
    return f


def open_keras_weights(path: str, *, model: Any = None, param_names: ParamNames | None = None,
                       allow_large: bool = False) -> Reader:
    """Open a Keras 3 ``.weights.h5`` / ``.keras`` or a Keras 2 ``.h5`` file lazily.

    ``model``: a model of the architecture that wrote the file (or one with the
    same layer names), used to name params and, for files without layer names,
    to map Keras's class-name keys to layer names.  ``allow_large``: accept datasets declaring
    far more bytes than the file holds (compressed or sparse; refused by default).
    """
    path = str(path)
    closers = []
    source: Any = path
    require_regular_file(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                members = z.namelist()
                if "model.weights.h5" not in members:
                    raise StoreError(path, f"a .keras archive without model.weights.h5 (members: {members[:8]})")
                source = io.BytesIO(read_zip_member(z, "model.weights.h5", path))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zlib.error) as e:
            raise StoreError(path, f"damaged .keras archive ({e})") from None
    f = _open_h5(path, source, allow_large)
    closers.append(f.close)
    entries: dict[str, Entry] = {}
    notes: list[str] = []
    optimizer: dict[str, Entry] = {}
    try:
        if isinstance(f.get("layers"), h5py.Group):
            fmt = "keras3"
            _walk_keras3(f["layers"], path, model, "", entries, notes, param_names)
            if isinstance(f.get("optimizer"), h5py.Group):
                f["optimizer"].visititems(lambda rel, o: optimizer.__setitem__(f"optimizer/{rel}", _ds_entry(o, path, rel))
                                          if isinstance(o, h5py.Dataset) else None)
        else:
            root = f["model_weights"] if isinstance(f.get("model_weights"), h5py.Group) else f
            if "layer_names" not in root.attrs:
                raise StoreError(path, "an HDF5 file that is neither a growstage snapshot nor a Keras weights file")
            fmt = "keras2"
            _walk_keras2(root, path, entries)
            if isinstance(f.get("optimizer_weights"), h5py.Group):
                f["optimizer_weights"].visititems(
                    lambda rel, o: optimizer.__setitem__(rel, _ds_entry(o, path, rel)) if isinstance(o, h5py.Dataset) else None)
    except StoreError:
        f.close()
        raise
    except Exception as e:  # h5py raises KeyError/OSError/ValueError/RuntimeError on damage
        f.close()
        raise StoreError(path, f"damaged Keras weights file ({type(e).__name__}: {e})") from None
    if optimizer:
        notes.append(f"{len(optimizer)} optimizer tensors set apart (not params)")
    return Reader(path, fmt, entries, notes=notes, optimizer=optimizer, closer=f.close)
