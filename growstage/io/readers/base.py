"""The one lazy interface behind every checkpoint reader.

A :class:`Reader` maps flat tensor names to :class:`Entry` objects that know
their shape and dtype and read their value (or a slice of it) only when
asked.  :meth:`Reader.to_snapshot` cuts the flat names into
``layer/param`` keys for planning.  numpy only.

Example::

    >>> import numpy as np
    >>> r = Reader("mem", "dict", {"enc/lstm/kernel": Entry.of(np.ones((2, 3), "f4"))})
    >>> r["enc/lstm/kernel"].shape, r.read("enc/lstm/kernel", np.s_[:, :1]).shape
    ((2, 3), (2, 1))
    >>> list(r.to_snapshot(["enc/lstm"]).layers)
    ['enc/lstm']
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from growstage.core.errors import GrowstageError, StoreError, UnknownNameError
from growstage.core.values import Param, Snapshot, join_name, snapshot_from_flat

_PART = re.compile(r"^(.+)/part_(\d+)$")


def part_groups(names: Iterable[str]) -> dict[str, dict[int, str]]:
    """TF's partitioned-variable naming: ``{"w": {0: "w/part_0", 1: "w/part_1"}}``.

    >>> part_groups(["w/part_1", "w/part_0", "b"])
    {'w': {1: 'w/part_1', 0: 'w/part_0'}}
    """
    groups: dict[str, dict[int, str]] = {}
    for name in names:
        m = _PART.match(name)
        if m:
            groups.setdefault(m.group(1), {})[int(m.group(2))] = name
    return groups


# bool, int, uint, float; bfloat16 (ml_dtypes, kind "V") is allowed by name
_NUMERIC_KINDS = "biuf"


def is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in _NUMERIC_KINDS or dtype.name == "bfloat16"


@dataclass
class Entry:
    """One tensor of a checkpoint: shape and dtype now, the value on ``read()``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    loader: Callable[[Any], np.ndarray]
    source: str = ""
    split: list | None = None
    roles: tuple[str, ...] | None = None

    @classmethod
    def of(cls, arr: np.ndarray, source: str = "") -> "Entry":
        arr = np.asarray(arr)
        return cls(tuple(arr.shape), arr.dtype, lambda index: arr if index is None else arr[index], source)

    def read(self, index: Any = None) -> np.ndarray:
        return np.asarray(self.loader(index))


@dataclass
class Reader(Mapping):
    """A checkpoint opened for lazy reading: ``{name: Entry}`` plus notes.

    ``optimizer`` holds tensors recognised as optimizer state (slots, step
    counters), kept apart so that they never pose as params.
    """

    path: str
    format: str
    entries: dict[str, Entry]
    notes: list[str] = field(default_factory=list)
    optimizer: dict[str, Entry] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    closer: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        # Entries are public (``reader.optimizer[name].read()``): their own reads must fail as a
        # StoreError naming the file too, not only those through :meth:`read`.
        for table in (self.entries, self.optimizer):
            for name, entry in table.items():
                entry.loader = _guarded(entry.loader, self.path, name)

    def __getitem__(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownNameError("tensor", name, self.entries, hint=f"in {self.path}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, name: str, index: Any = None) -> np.ndarray:
        """The value of ``name`` (or ``value[index]``); damage raises :class:`StoreError`."""
        entry = self[name]
        try:
            arr = entry.read(index)
        except StoreError:
            raise
        except Exception as e:  # h5py, TF and zip raise many types for a damaged file
            raise StoreError(self.path, f"cannot read tensor {name!r}: {type(e).__name__}: {e}") from None
        if index is None and tuple(arr.shape) != entry.shape:
            raise StoreError(self.path, f"tensor {name!r} declares shape {entry.shape} but holds {arr.shape}")
        return arr

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def param(self, name: str) -> Param:
        """``name`` as a lazy :class:`Param` (split info unknown: derived when planning)."""
        entry = self[name]
        return Param(_LazyEntry(self, name, entry), split=entry.split, roles=entry.roles)

    def to_snapshot(self, layer_names: Iterable[str] = ()) -> Snapshot:
        """Cut each name into ``layer/param``: at the longest known layer name, else at the first ``/``."""
        snap = snapshot_from_flat({n: self.param(n) for n in self.entries}, layer_names, meta=dict(self.meta),
                                  notes=self.notes)
        snap.path, snap.closer = self.path, self.close
        return snap


def _guarded(loader: Callable[[Any], np.ndarray], path: str, name: str) -> Callable[[Any], np.ndarray]:
    def load(index: Any) -> np.ndarray:
        try:
            return loader(index)
        except GrowstageError:
            raise
        except Exception as e:  # h5py, TF and zip raise many types for a damaged file
            raise StoreError(path, f"cannot read tensor {name!r}: {type(e).__name__}: {e}") from None

    return load


class _LazyEntry:
    __slots__ = ("_reader", "_name", "shape", "dtype")

    def __init__(self, reader: Reader, name: str, entry: Entry):
        self._reader, self._name = reader, name
        self.shape, self.dtype = entry.shape, entry.dtype

    def read(self) -> np.ndarray:
        return self._reader.read(self._name)

    @property
    def origin(self) -> str:
        """The file's own name for this tensor (and slice), where the reader renamed it."""
        return self._reader.entries[self._name].source

    def __array__(self, dtype=None, copy=None):
        arr = self.read()
        return arr if dtype is None else arr.astype(dtype)


def from_snapshot(snap: Snapshot, path: str, fmt: str = "growstage") -> Reader:
    """A growstage snapshot seen through the flat reader interface."""
    entries: dict[str, Entry] = {}
    for lname, params in snap.layers.items():
        for pname, prm in params.items():
            entries[join_name(lname, pname)] = Entry(prm.shape, prm.dtype, _param_loader(prm),
                                                     split=prm.split, roles=prm.roles)
    meta = {k: v for k, v in snap.meta.items() if not k.startswith("_")}
    return Reader(path, fmt, entries, notes=list(snap.notes), meta=meta, closer=snap.close)


def _param_loader(prm: Param) -> Callable[[Any], np.ndarray]:
    return lambda index: prm.read() if index is None else prm.read()[index]
