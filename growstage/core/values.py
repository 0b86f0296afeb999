"""Values dicts: ``{layer_name: {param_name: Param}}`` plus metadata.

A :class:`Param` carries the array (or a lazy handle that reads it on
demand), its split info and its axis roles.  A :class:`Snapshot` is the whole
network's values dict.  numpy only: no framework import here.

Example::

    >>> import numpy as np
    >>> snap = Snapshot({"out": {"kernel": Param(np.zeros((4, 2)), split=[[2, 2], [2]])}})
    >>> snap["out"]["kernel"].shape
    (4, 2)
    >>> snap.values_dict()["out"]["kernel"].dtype
    dtype('float64')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from growstage.core.errors import GrowstageError, UnknownNameError
from growstage.core.resize import Split, whole_split
from growstage.core.vocab import Role

# Axis roles (see DESIGN.md and :class:`~growstage.core.vocab.Role`), also importable from here.
UNITS, INPUT, GATES, HEADS = Role.UNITS, Role.INPUT, Role.GATES, Role.HEADS
HEAD_DIM, SPATIAL, VOCAB, OTHER = Role.HEAD_DIM, Role.SPATIAL, Role.VOCAB, Role.OTHER
RECURRENT, INPUT_HEADS, INPUT_HEAD_DIM = Role.RECURRENT, Role.INPUT_HEADS, Role.INPUT_HEAD_DIM
QUERY_HEAD_DIM = Role.QUERY_HEAD_DIM
GROUPED_HEADS, INPUT_GROUPED_HEADS, ROPE_HEAD_DIM = Role.GROUPED_HEADS, Role.INPUT_GROUPED_HEADS, Role.ROPE_HEAD_DIM
STREAM, STREAM_INPUT, STREAM_GAIN, STREAM_OUTPUT = Role.STREAM, Role.STREAM_INPUT, Role.STREAM_GAIN, Role.STREAM_OUTPUT


@dataclass
class Param:
    """One parameter: its value, split info and axis roles.

    ``value`` is an ``np.ndarray`` or any object with ``shape``, ``dtype`` and a
    ``read()`` method (a lazy file-backed array).  ``split`` may be ``None``
    when unknown (it is then derived from the other side of a transfer).
    """

    value: Any
    split: Split | None = None
    roles: tuple[str, ...] | None = None
    trainable: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.value.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.value.dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def read(self) -> np.ndarray:
        """The value as an ndarray (reads from disk for lazy params)."""
        v = self.value
        if isinstance(v, np.ndarray):
            return v
        if hasattr(v, "read"):
            return v.read()
        return np.asarray(v)


@dataclass
class Snapshot(Mapping):
    """The values dict of a network, with split info, roles and metadata.

    Behaves as a read-only mapping ``layer -> {param: Param}``.
    """

    layers: dict[str, dict[str, Param]]
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    path: str | None = None  # the file it reads from, if any
    closer: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # releases that file
    # renamed snapshots: {layer/param: (the source tensor's own name, the rule that mapped it)}
    origins: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, layer: str) -> dict[str, Param]:
        try:
            return self.layers[layer]
        except KeyError:
            raise UnknownNameError("layer", layer, self.layers) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def keys_flat(self) -> list[str]:
        """``layer/param`` keys of every param."""
        return [join_name(l, p) for l, ps in self.layers.items() for p in ps]

    def flat(self) -> dict[str, Param]:
        """``{layer/param: Param}``."""
        return {join_name(l, p): prm for l, ps in self.layers.items() for p, prm in ps.items()}

    def values_dict(self) -> dict[str, dict[str, np.ndarray]]:
        """Plain ``{layer: {param: ndarray}}`` of writable arrays (reads lazy params)."""
        return {l: {p: _writable(prm.read()) for p, prm in ps.items()} for l, ps in self.layers.items()}

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for ps in self.layers.values() for p in ps.values())

    def close(self) -> None:
        """Release a backing file, if any."""
        if self.closer is not None:
            self.closer()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_snapshot(source: Any) -> Snapshot:
    """Wrap a plain values dict ``{layer: {param: array}}`` as a :class:`Snapshot`."""
    if isinstance(source, Snapshot):
        return source
    if not isinstance(source, Mapping):
        raise GrowstageError(
            f"cannot use a {type(source).__name__} as a values dict; expected a Snapshot, "
            "a path to a growstage HDF5 file, a Keras model or {layer: {param: array}}")
    layers: dict[str, dict[str, Param]] = {}
    for lname, params in source.items():
        if not isinstance(params, Mapping):
            hint = ("; it looks like a rename map (stack_rename's result): give the snapshot as the source and "
                    "the map as rename=") if isinstance(params, (list, tuple)) and all(
                        isinstance(x, str) for x in params) else ""
            raise GrowstageError(f"values dict entry {lname!r} is a {type(params).__name__}, expected "
                                 f"{{param: array}}{hint}")
        layers[str(lname)] = {
            str(p): v if isinstance(v, Param) else Param(np.asarray(v)) for p, v in params.items()
        }
    return Snapshot(layers)


def _writable(arr: np.ndarray) -> np.ndarray:
    # a live model's snapshot holds read-only views of its tensors; editing one needs a copy
    return arr if arr.flags.writeable else np.array(arr)


def join_name(layer: str, param: str) -> str:
    return f"{layer}/{param}" if layer else param


def split_name(name: str, layer_names: Iterable[str] = ()) -> tuple[str, str]:
    """``(layer, param)`` for a flat name; known (possibly nested) layer names win.

    >>> split_name("conv_layers/conv1/kernel", ["conv_layers/conv1"])
    ('conv_layers/conv1', 'kernel')
    >>> split_name("out/kernel"), split_name("step")
    (('out', 'kernel'), ('', 'step'))
    """
    names = layer_names if isinstance(layer_names, (set, frozenset, Mapping)) else set(layer_names)
    cut = name.rfind("/")
    while cut > 0:
        if name[:cut] in names:
            return name[:cut], name[cut + 1:]
        cut = name.rfind("/", 0, cut)
    head, sep, tail = name.partition("/")
    return (head, tail) if sep else ("", name)


def snapshot_from_flat(flat: Mapping[str, Param], layer_names: Iterable[str] = (), *,
                       meta: dict[str, Any] | None = None, notes: Iterable[str] = ()) -> Snapshot:
    """A Snapshot from ``{layer/param: Param}``, cut at the given layer names."""
    names = set(layer_names)
    layers: dict[str, dict[str, Param]] = {}
    for key, prm in flat.items():
        lname, pname = split_name(key, names)
        layers.setdefault(lname, {})[pname] = prm
    return Snapshot(layers, meta=dict(meta or {}), notes=list(notes))
