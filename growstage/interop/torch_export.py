"""Keras <-> PyTorch state_dicts: layer types, naming, the export report, safetensors files.

``to_torch`` walks a source's layers (a Keras model, a Snapshot or any file growstage reads),
converts each with :mod:`growstage.interop.torch_layouts` and names the tensors
``<module_path>.<torch_name>``; ``from_torch`` builds a Snapshot with Keras param names from a
state_dict and moves it into a Keras model with the usual (strict, transactional) transfer.

Example::

    >>> import numpy as np
    >>> sd = to_torch({"out": {"kernel": np.ones((3, 2), "f4")}}, types={"out": "Dense"}, tensors=False)
    >>> {k: v.shape for k, v in sd.items()}
    {'out.weight': (2, 3)}
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from growstage.core.errors import GrowstageError, PlanError, StoreError, UnknownNameError, did_you_mean
from growstage.core.values import Param, Snapshot
from growstage.engine.report import PlanRow, Report
from growstage.interop.torch_import import import_layer
from growstage.interop.torch_layouts import KINDS, TorchLayoutError, export_layer, rnn_kind

_UNKNOWN = ("error", "raw")


class ExportRow(PlanRow):
    """A plan row whose target is a torch state_dict key (``module.path.name``)."""

    @property
    def target(self) -> str | None:
        return f"{self.layer}.{self.param}" if self.layer else self.param


class ExportReport(Report):
    """The export as carried out: one row per torch tensor."""

    def table(self, *, collapse_layers: bool = False) -> str:
        return super().table(collapse_layers=collapse_layers)


def infer_kind(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """A Keras layer type from its param names and shapes, or None.

    >>> infer_kind({"cell/kernel": (3, 8), "cell/recurrent_kernel": (2, 8), "cell/bias": (8,)})
    'LSTM'
    """
    names = set(shapes)
    if "embeddings" in names:
        return "Embedding"
    if "moving_mean" in names:
        return "BatchNormalization"
    if names and names <= {"gamma", "beta"}:
        return "LayerNormalization"
    if "forward_layer/cell/recurrent_kernel" in names:
        return "Bidirectional"
    if "cell/recurrent_kernel" in names:
        return rnn_kind(shapes["cell/recurrent_kernel"])
    if "query/kernel" in names:
        return "MultiHeadAttention"
    if "kernel" in names and names <= {"kernel", "bias"}:
        nd = len(shapes["kernel"])
        return "Dense" if nd == 2 else f"Conv{nd - 2}D" if 3 <= nd <= 5 else None
    return None


def layer_types(snap: Snapshot, types: Mapping[str, str] | None = None) -> tuple[dict[str, str | None], list[str]]:
    """Each layer's Keras type: ``types`` first, then the snapshot's meta, then inferred (noted)."""
    types = dict(types or {})
    for name, kind in types.items():
        if name not in snap.layers:
            raise UnknownNameError("layer in types=", name, snap.layers)
        if kind not in KINDS:
            raise UnknownNameError(f"Keras type for {name!r} in types=", kind, KINDS, f"(known: {', '.join(KINDS)})")
    known = dict(snap.meta.get("layer_types") or {})
    out, inferred = {}, []
    for lname, params in snap.layers.items():
        kind = types.get(lname) or known.get(lname)
        if kind is None:
            kind = infer_kind({p: prm.shape for p, prm in params.items()})
            inferred.append(f"{lname}={kind}")
        out[lname] = kind
    notes = [f"layer types inferred from param names (pass types= to override): {', '.join(inferred)}"] \
        if inferred else []
    return out, notes


_RNN_KINDS = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
_LAYER_SUFFIX = re.compile(r"_l(\d+)(?=(_reverse)?$)")


def module_paths(layers: Mapping[str, Any], naming: Mapping[str, str] | None) -> dict[str, str]:
    """``{layer: torch module path}``: ``naming`` where given, else the layer name ('/' -> '.').

    A recurrent layer's path may end in ``@N``: layer N of a stacked torch module
    (``{"lstm1": "rnn", "lstm2": "rnn@1"}`` fill one ``nn.LSTM(num_layers=2)``).
    """
    naming = dict(naming or {})
    for name in naming:
        if name not in layers:
            raise UnknownNameError("layer in naming=", name, layers)
    return {l: naming.get(l, l.replace("/", ".")) for l in layers}


def _path_and_index(path: str, kind: str | None) -> tuple[str, int]:
    """``("rnn", 1)`` from ``"rnn@1"``; only recurrent layers take an index."""
    base, sep, index = path.rpartition("@")
    if not sep:
        return path, 0
    if not index.isdigit() or kind not in _RNN_KINDS:
        raise GrowstageError(f"module path {path!r}: '@N' (layer N of a stacked torch RNN) needs a digit and a "
                             f"recurrent layer (LSTM, GRU, SimpleRNN, Bidirectional), not {kind}")
    return base, int(index)


def _with_index(name: str, index: int) -> str:
    return _LAYER_SUFFIX.sub(f"_l{index}", name) if index else name


def _raw(lname: str, params: Mapping[str, Param]):
    from growstage.interop.torch_layouts import TorchTensor

    return [TorchTensor(p.replace("/", "."), prm.read(), p, "passed through raw (unknown type)")
            for p, prm in params.items()]


EXPORT_OPTIONS = ("naming", "types", "unknown", "allow_auto_names", "allow_large")


def export_state_dict(source: Any, *, naming: Mapping[str, str] | None = None,
                      types: Mapping[str, str] | None = None, unknown: str = "error",
                      allow_auto_names: bool = False,
                      allow_large: bool = False) -> tuple[dict[str, np.ndarray], ExportReport]:
    """``({torch key: ndarray}, report)`` for ``source``; see :func:`to_torch`."""
    from growstage.engine.sources import resolve_source

    if unknown not in _UNKNOWN:
        raise GrowstageError(f"unknown={unknown!r}: expected one of {_UNKNOWN}")
    for option, value in (("naming", naming), ("types", types)):
        if value is not None and not isinstance(value, Mapping):
            raise GrowstageError(f"{option}= takes a dict {{keras layer: ...}}, not {type(value).__name__}")
    snap = resolve_source(source, allow_auto_names=allow_auto_names, allow_large=allow_large)
    kinds, notes = layer_types(snap, types)
    paths = module_paths(snap.layers, naming)
    bad = {l: k for l, k in kinds.items() if k not in KINDS}
    if bad and unknown == "error":
        which = ", ".join(f"{l} ({k or 'type unknown'})" for l, k in bad.items())
        raise TorchLayoutError(f"no torch.nn conversion for {which}; known: {', '.join(KINDS)}. "
                               "Pass types={layer: type} or unknown='raw'")
    state: dict[str, np.ndarray] = {}
    rows: list[PlanRow] = []
    notes += _model_notes(source, kinds)
    for lname, params in snap.layers.items():
        if lname in bad:
            tensors, layer_notes = _raw(lname, params), [f"{lname}: {bad[lname]} passed through raw"]
        else:
            try:
                tensors, layer_notes = export_layer(kinds[lname], {p: prm.read() for p, prm in params.items()})
            except TorchLayoutError as e:
                raise TorchLayoutError(f"layer {lname!r} ({kinds[lname]}): {e}") from None
        notes += [f"{lname}: {n}" for n in layer_notes]
        path, index = _path_and_index(paths[lname], kinds[lname])
        for t in tensors:
            name = _with_index(t.name, index)
            key = f"{path}.{name}" if path else name
            if key in state:
                raise GrowstageError(f"two tensors named {key!r}: give the layers distinct module paths in naming=")
            state[key] = t.value
            src = params.get(t.source) if t.source else None
            rows.append(ExportRow(path, name, f"{lname}/{t.source}" if t.source else None,
                                  "copied" if t.source else "zeroed", src.shape if src is not None else None,
                                  tuple(t.value.shape), t.how))
    return state, ExportReport(rows, notes=notes + list(snap.notes))


def _model_notes(source: Any, kinds: Mapping[str, str | None]) -> list[str]:
    """eps of normalisation layers: Keras's defaults differ from torch's (1e-3 vs 1e-5)."""
    notes = []
    for lname, kind in kinds.items():
        if kind not in ("LayerNormalization", "BatchNormalization"):
            continue
        eps = None
        if hasattr(source, "get_layer"):
            eps = getattr(source.get_layer(lname), "epsilon", None)
        torch_cls = "nn.LayerNorm" if kind == "LayerNormalization" else "nn.BatchNormNd"
        extra = ", momentum=1 - keras momentum" if kind == "BatchNormalization" else ""
        notes.append(f"{lname}: build {torch_cls}(eps={eps if eps is not None else '<Keras epsilon, default 1e-3>'}"
                     f"{extra}); torch's default eps is 1e-5")
    return notes


def _as_tensors(state: dict[str, np.ndarray], tensors: bool | None) -> dict[str, Any]:
    if tensors is False:
        return state
    try:
        import torch
    except ImportError:
        if tensors:
            raise GrowstageError("tensors=True needs torch (pip install torch); tensors=None gives numpy without it")
        return state
    return {k: torch.from_numpy(np.ascontiguousarray(v).copy()) for k, v in state.items()}


def to_torch(source: Any, *, naming: Mapping[str, str] | None = None, types: Mapping[str, str] | None = None,
             unknown: str = "error", tensors: bool | None = None, allow_auto_names: bool = False,
             allow_large: bool = False) -> dict[str, Any]:
    """A torch ``state_dict`` for the ``torch.nn`` modules equivalent to ``source``'s Keras layers.

    ``source``: a Keras model, a Snapshot, a values dict or any file growstage reads.
    ``naming``: ``{keras layer: torch module path}`` (default: the layer name).  ``types``:
    ``{layer: Keras type}`` where the source does not say (files); otherwise the types are
    inferred from param names and the report says so.  ``unknown="raw"`` passes layers of
    unknown types through under their own names instead of raising.  ``tensors``: torch tensors
    (True), numpy arrays (False), or tensors when torch is importable (None).  ``allow_large``:
    see :func:`growstage.load`.

    Example::

        >>> import numpy as np
        >>> values = {"enc": {"cell/kernel": np.ones((3, 8), "f4"), "cell/recurrent_kernel": np.ones((2, 8), "f4"),
        ...                   "cell/bias": np.ones(8, "f4")}}
        >>> sd = to_torch(values, naming={"enc": "rnn@1"}, tensors=False)   # layer 1 of a stacked nn.LSTM
        >>> {k: v.shape for k, v in sd.items()}["rnn.weight_hh_l1"], float(sd["rnn.bias_hh_l1"].sum())
        ((8, 2), 0.0)
    """
    state, _ = export_state_dict(source, naming=naming, types=types, unknown=unknown,
                                 allow_auto_names=allow_auto_names, allow_large=allow_large)
    return _as_tensors(state, tensors)


def save_safetensors(source: Any, path: str | os.PathLike, *, metadata: Mapping[str, str] | None = None,
                     **options: Any) -> ExportReport:
    """Write :func:`to_torch`'s state_dict as a safetensors file (atomically); returns the report.

    Example::

        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> rep = save_safetensors({"out": {"kernel": np.ones((3, 2), "f4")}}, path, types={"out": "Dense"})
        >>> rep.row("out.weight").reason, rep.row("out.weight").new_shape
        ('transposed', (2, 3))
    """
    try:
        from safetensors.numpy import save_file
    except ImportError:
        raise GrowstageError("save_safetensors needs the safetensors package (pip install safetensors)") from None
    for key in options:
        if key not in EXPORT_OPTIONS:
            raise GrowstageError(f"save_safetensors: unknown option {key!r}{did_you_mean(key, EXPORT_OPTIONS)} "
                                 f"(options: {', '.join(EXPORT_OPTIONS)})")
    path = _output_path(source, path)
    state, report = export_state_dict(source, **options)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, tmp,
                  metadata={"format": "pt", **dict(metadata or {})})
        os.replace(tmp, path)
    except OSError as e:
        raise StoreError(path, f"cannot write it ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    report.bytes_written = os.path.getsize(path)
    return report


def _output_path(source: Any, path: str | os.PathLike) -> str:
    """Where the file goes: never over the source (or into its folder), a FIFO, a device or a folder."""
    from growstage.io.outputs import check_output

    return check_output(path, [source] if isinstance(source, (str, os.PathLike)) else [], suffix_hint=".safetensors")


def _numpy_state(state_dict: Any) -> dict[str, np.ndarray]:
    if isinstance(state_dict, (str, os.PathLike)):
        path = os.fspath(state_dict)
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise GrowstageError("reading a .safetensors file needs the safetensors package: "
                                 "pip install safetensors") from None
        try:
            return load_file(path)
        except Exception as e:  # a missing, truncated or foreign file: say which and why
            raise StoreError(path, f"cannot read it as safetensors ({type(e).__name__}: {e})") from None
    if not isinstance(state_dict, Mapping):
        raise GrowstageError(f"from_torch reads a state_dict (a mapping) or a .safetensors path, "
                             f"not a {type(state_dict).__name__}")
    out = {}
    for k, v in state_dict.items():
        try:
            out[k] = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        except TypeError as e:  # numpy has no bfloat16: torch refuses the conversion
            raise GrowstageError(f"torch tensor {k!r}: {e}; cast the state_dict to float32 first "
                                 "({k: v.float() for k, v in sd.items()})") from None
    return out


def _module_tensors(sd: Mapping[str, np.ndarray], prefix: str, index: int) -> dict[str, np.ndarray]:
    """One module's tensors, named relative to it; layer ``index`` of a stacked RNN reads as layer 0
    (the layouts know only ``_l0``)."""
    sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not index:
        return sub
    found = {k: _LAYER_SUFFIX.search(k) for k in sub}
    return {_LAYER_SUFFIX.sub("_l0", k): v for k, v in sub.items() if found[k] and int(found[k].group(1)) == index}


def from_torch(state_dict: Any, model: Any, *, naming: Mapping[str, str] | None = None, ignore_unused: bool = False,
               allow_auto_names: bool = False, **options: Any) -> Report:
    """Move a torch ``state_dict`` (or a .safetensors path) into a Keras ``model``: strict, reported,
    transactional (a failure leaves ``model`` unchanged).  ``naming`` as for :func:`to_torch`;
    torch tensors nobody reads are an error unless ``ignore_unused``.  Other options go to
    :func:`growstage.transfer`.

    Example::

        >>> import keras, numpy as np
        >>> x = keras.Input((3,))
        >>> model = keras.Model(x, keras.layers.Dense(2, name="out")(x))
        >>> rep = from_torch({"out.weight": np.ones((2, 3), "f4"), "out.bias": np.zeros(2, "f4")}, model)
        >>> rep.counts(), float(np.asarray(model.get_layer("out").kernel).sum())
        ({'copied': 2}, 6.0)
    """
    from growstage.engine.writing import transfer
    from growstage.framework.capture import snapshot

    if callable(getattr(state_dict, "state_dict", None)):
        state_dict = state_dict.state_dict()  # a torch.nn.Module
    sd = _numpy_state(state_dict)
    target = snapshot(model, lazy=True, allow_auto_names=allow_auto_names)
    kinds = target.meta["layer_types"]
    paths = module_paths(target.layers, naming)
    layers, used, notes, problems = {}, set(), [], []
    for lname, params in target.layers.items():
        path, index = _path_and_index(paths[lname], kinds[lname])
        prefix = f"{path}." if path else ""
        try:
            values, read, layer_notes = import_layer(kinds[lname], _module_tensors(sd, prefix, index),
                                                     {p: prm.shape for p, prm in params.items()})
        except TorchLayoutError as e:
            problems.append(f"layer {lname!r} ({kinds[lname]}) from torch module {paths[lname]!r}: {e}")
            continue
        used.update(prefix + _with_index(r, index) for r in read)
        notes += [f"{lname}: {n}" for n in layer_notes]
        layers[lname] = {p: Param(v) for p, v in values.items()}
    unused = sorted(set(sd) - used)
    if unused and not ignore_unused:
        problems.append(f"torch tensors no Keras layer reads: {', '.join(unused)} (map them with naming= "
                        "or pass ignore_unused=True)")
    elif unused:
        notes.append(f"ignored torch tensors: {', '.join(unused)}")
    if problems:
        raise PlanError(problems, source="torch state_dict")
    if allow_auto_names:
        options["allow_auto_names"] = True
    report = transfer(Snapshot(layers, meta={"layer_types": kinds}), model, **options)
    report.notes += notes
    return report
