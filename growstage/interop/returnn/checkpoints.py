"""RETURNN TF checkpoints in and out: open one with growstage names, write one from a Keras model.

Example (into Keras and back; ``growstage.transfer`` and ``growstage.preload`` take the reader
where they take a path)::

    >>> import keras, numpy as np, tempfile, os
    >>> prefix = os.path.join(tempfile.mkdtemp(), "model.001")
    >>> save_checkpoint({"out/W": np.ones((3, 2), "f4"), "out/b": np.zeros(2, "f4")}, prefix, global_step=7)
    >>> x = keras.Input((3,))
    >>> m = keras.Model(x, keras.layers.Dense(2, name="out")(x))
    >>> import growstage
    >>> growstage.transfer(open_returnn(prefix), m).counts()
    {'copied': 2}
    >>> sorted(to_returnn(m))
    ['out/W', 'out/b']
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import numpy as np

from growstage.core.errors import GrowstageError
from growstage.core.rules import Rules
from growstage.interop.returnn.names import from_returnn, to_returnn_names
from growstage.io.readers.base import Reader


def open_returnn(path: str | os.PathLike, *, forget_bias: float | Mapping[str, float] = 1.0,
                 ignore: Iterable[str] = (), allow_large: bool = False) -> Reader:
    """Open a RETURNN (TF backend) checkpoint lazily, with growstage names and Keras layouts.

    See :mod:`growstage.interop.returnn.names` for the mapping; ``forget_bias`` and ``ignore``
    as for :func:`~growstage.interop.returnn.names.from_returnn`; ``allow_large`` as for
    :func:`~growstage.open_checkpoint` (a RETURNN checkpoint saved as HDF5).
    """
    from growstage.io.readers import open_checkpoint

    return from_returnn(open_checkpoint(path, allow_large=allow_large), forget_bias=forget_bias, ignore=ignore)


BIDIRECTIONAL = [(r"(.+)_fw/(cell/.*)", r"\1/forward_layer/\2"), (r"(.+)_bw/(cell/.*)", r"\1/backward_layer/\2")]


def rules(*, bidirectional: bool = False, **fields: Any) -> Rules:
    """A :class:`~growstage.Rules` for a checkpoint opened with :func:`open_returnn`.

    ``bidirectional=True``: RETURNN's rec pairs ``L_fw`` / ``L_bw`` (directions 1 and -1) become the
    ``forward_layer`` / ``backward_layer`` of a Keras ``Bidirectional`` named ``L`` (its regex rules come
    first; other ``regex`` rules follow; strict as every rule: the checkpoint must hold both directions).
    Other fields as for ``Rules``.

    >>> sorted(rules(bidirectional=True).apply(["lstm1_fw/cell/bias", "lstm1_bw/cell/bias", "output/bias"]).targets)
    ['lstm1/backward_layer/cell/bias', 'lstm1/forward_layer/cell/bias', 'output/bias']
    """
    regex = list(BIDIRECTIONAL if bidirectional else []) + list(fields.pop("regex", []))
    return Rules.coerce({**fields, "regex": regex})


def units_of(net_dict: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{layer: unit}`` of every rec layer of a RETURNN network dict (subnetworks included).

    >>> units_of({"l1": {"class": "rec", "unit": "standardlstm"}, "s": {"class": "subnetwork",
    ...           "subnetwork": {"output": {"class": "rec", "unit": "lstm"}}}})
    {'l1': 'standardlstm', 's/output': 'lstm'}
    """
    out: dict[str, str] = {}
    for name, layer in net_dict.items():
        if layer.get("class") == "rec":
            out[prefix + name] = str(layer.get("unit", "lstm"))
        elif layer.get("class") == "subnetwork":
            out.update(units_of(layer.get("subnetwork", {}), f"{prefix}{name}/"))
    return out


def to_returnn(source: Any, *, net_dict: Mapping[str, Any] | None = None,
               units: str | Mapping[str, str] = "nativelstm2",
               forget_bias: float | Mapping[str, float] = 1.0) -> dict[str, np.ndarray]:
    """``{RETURNN name: array}`` of a Keras model, snapshot, values dict or checkpoint path.

    The LSTM layout of each rec layer comes from ``net_dict`` (the dict the model was built from)
    or ``units`` (one unit for all, or ``{layer: unit}``): nativelstm2 (default) or standardlstm.
    """
    from growstage.engine.sources import resolve_source

    snap = resolve_source(source)
    if net_dict is not None:
        units = units_of(net_dict)
    return to_returnn_names({k: p.read() for k, p in snap.flat().items()}, units=units, forget_bias=forget_bias)


def save_checkpoint(values: Mapping[str, Any], prefix: str | os.PathLike, *, global_step: int | None = None) -> None:
    """Write ``{name: array}`` as a TF checkpoint (``prefix.index`` + data) that RETURNN loads.

    ``global_step``: RETURNN's step counter, stored beside the params as ``global_step`` (int64).
    Written to a temporary prefix first and renamed, so a crash leaves no half-written checkpoint.
    """
    import tensorflow as tf

    prefix = os.path.abspath(os.fspath(prefix))
    if not os.path.isdir(os.path.dirname(prefix)):
        raise GrowstageError(f"save_checkpoint: the folder of {prefix} does not exist; create it first")
    from growstage.io.outputs import check_output

    for out in (prefix + ".index", prefix + ".data-00000-of-00001"):  # never over a FIFO, device or folder
        check_output(out)
    values = {str(k): np.ascontiguousarray(v) for k, v in values.items()}
    bad = [k for k, v in values.items() if v.dtype.kind not in "biuf"]
    if bad:
        raise GrowstageError(f"save_checkpoint: {bad[0]!r} is not a numeric array ({values[bad[0]].dtype}); "
                             "a checkpoint holds numbers only")
    if global_step is not None:
        if "global_step" in values:
            raise GrowstageError("save_checkpoint: 'global_step' given twice (in values and as global_step=)")
        values["global_step"] = np.asarray(global_step, "int64")
    if not values:
        raise GrowstageError(f"save_checkpoint: nothing to write to {prefix}")
    names = sorted(values)
    tmp = f"{prefix}.tmp{os.getpid()}"
    tf.raw_ops.SaveV2(prefix=tmp, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
    data = [f for f in os.listdir(os.path.dirname(tmp)) if f.startswith(os.path.basename(tmp) + ".data-")]
    for f in data:  # data first, index last: the index is what makes the checkpoint visible
        os.replace(os.path.join(os.path.dirname(tmp), f), prefix + f[len(os.path.basename(tmp)):])
    os.replace(tmp + ".index", prefix + ".index")
