"""Which files an initializer deserialised from a model file may open.

A ``FromCheckpoint`` built in code opens what its author named.  One that Keras deserialises
from a config (``keras.saving.load_model``, ``model_from_json``, ...) carries a path written
by whoever made the file, so it may open only:

- a path inside the folder of the model file being loaded (resolved: ``..`` and symlinks are
  followed before the check, also for the files inside a checkpoint folder or prefix), or
- a path the user allowed: ``with growstage.trusted_paths(path, ...)`` around the loading, or
  the environment variable ``GROWSTAGE_TRUSTED_PATHS`` (paths joined by ``os.pathsep``).
  A trusted path covers itself and, for a folder, everything inside it.

A config loaded without a model file growstage can see (``model_from_json``, a file object)
has no own folder: only trusted paths open.  Safety flags (``allow_large``) never come from a
config; ``trusted_paths(..., allow_large=True)`` grants it explicitly.

>>> import os, tempfile
>>> d = os.path.realpath(tempfile.mkdtemp())
>>> confinement_problem(os.path.join(d, "w.npz"), d) is None
True
>>> confinement_problem("/etc/passwd", d)
'/etc/passwd lies outside'
>>> with trusted_paths("/etc"):
...     confinement_problem("/etc/passwd", d) is None
True
"""
from __future__ import annotations

import contextlib
import contextvars
import glob
import os
import sys
from typing import Any, Iterator

ENV = "GROWSTAGE_TRUSTED_PATHS"
_TRUSTED: contextvars.ContextVar[tuple[tuple[str, ...], bool]] = contextvars.ContextVar(
    "growstage_trusted_paths", default=((), False))


@contextlib.contextmanager
def trusted_paths(*paths: str | os.PathLike, allow_large: bool = False) -> Iterator[None]:
    """Allow initializers deserialised from model files to open ``paths`` (files or folders) inside
    the ``with`` block; ``allow_large=True`` also lets them read HDF5 files declaring far more bytes
    than they hold (a config alone cannot).  Nests: inner blocks add to outer ones.

    >>> import growstage
    >>> with growstage.trusted_paths("/data/checkpoints"):
    ...     pass  # keras.saving.load_model("elsewhere/model.keras") may read /data/checkpoints/...
    """
    outer, outer_large = _TRUSTED.get()
    token = _TRUSTED.set((outer + tuple(os.path.realpath(os.fspath(p)) for p in paths), outer_large or allow_large))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def trusted_large() -> bool:
    """Whether the innermost ``trusted_paths`` block granted ``allow_large``."""
    return _TRUSTED.get()[1]


def _trusted_roots() -> list[str]:
    env = [os.path.realpath(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    return list(_TRUSTED.get()[0]) + env


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _files_read(path: str) -> list[str]:
    """``path`` and what a reader may open through it: a folder's entries, a TF prefix's files."""
    found = [path]
    if os.path.isdir(path):
        found += [os.path.join(path, n) for n in os.listdir(path)]
    base = path[: -len(".index")] if path.endswith(".index") else path
    found += glob.glob(glob.escape(base) + ".index") + glob.glob(glob.escape(base) + ".data-*")
    return found


def confinement_problem(path: str, root: str | None) -> str | None:
    """None when every file reachable from ``path`` resolves inside ``root`` or a trusted path; else
    the first one that does not, as ``'<file> lies outside'``."""
    roots = ([root] if root else []) + _trusted_roots()
    for f in _files_read(path):
        real = os.path.realpath(f)
        if not any(_inside(real, r) for r in roots):
            return f"{f} lies outside"
    return None


def _frame_path(frame: Any) -> str | None:
    """The model file a Keras loading frame is reading, from its local variables."""
    for key in ("filepath", "fileobj", "dirpath"):
        value = frame.f_locals.get(key)
        value = getattr(value, "name", value) if key == "fileobj" else value
        if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
            return os.fspath(value)
    return None


def loading_model_file() -> str | None:
    """The model file Keras is loading right now (``.keras`` archive, model folder or legacy ``.h5``),
    or None.  Read from Keras's own loading frames: if a Keras release renames them, nothing is found
    and only trusted paths open (fail closed)."""
    frame = sys._getframe(1)
    marker = os.sep + "keras" + os.sep
    while frame is not None:
        name = frame.f_code.co_filename
        if marker in name and "saving" in name and "load" in frame.f_code.co_name:
            found = _frame_path(frame)
            if found:
                return os.path.abspath(found)
        frame = frame.f_back
    return None
