"""Where a writer may put its file: one check used by every writer (save, average, convert, export).

Writers go through a temporary file renamed over OUT, so an existing OUT is *replaced*, not
written into: a FIFO, a device such as ``/dev/null`` or a socket would silently become a regular
file, and an OUT that is one of the inputs (or lies inside an input folder: a ``fit``
checkpoint directory, a TensorFlow checkpoint's ``prefix.index`` / ``prefix.data-*``) would
destroy what is being read.  :func:`check_output` refuses all of these before anything is
written, comparing what the paths point at (``os.path.samefile``, resolved paths, symlinks
followed), not their spelling.

numpy-free and framework-free: the io layer.

>>> import os, tempfile
>>> d = tempfile.mkdtemp(); src = os.path.join(d, "a.h5"); _ = open(src, "wb").write(b"x")
>>> check_output(os.path.join(d, "b.h5"), [src]) == os.path.join(d, "b.h5")
True
>>> try:
...     check_output(os.path.join(d, ".", "a.h5"), [src])
... except StoreError as e:
...     print(e.problem[:22])
is an input, the sourc
"""
from __future__ import annotations

import glob
import os
import stat
from typing import Any, Iterable

from growstage.core.errors import StoreError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _tf_prefix(path: str) -> str | None:
    """The checkpoint prefix when ``path`` names a TensorFlow checkpoint by prefix, ``.index`` or data shard."""
    base = os.path.basename(path)
    if base.endswith(".index"):
        return path[: -len(".index")]
    if ".data-" in base:
        return path[: path.rindex(".data-")]
    if not os.path.exists(path) and os.path.exists(path + ".index"):
        return path
    return None


def _inside(child: str, folder: str) -> bool:
    return child == folder or child.startswith(folder.rstrip(os.sep) + os.sep)


def _clash(out: str, real_out: str, src: str) -> str | None:
    """Why writing ``out`` would harm the input ``src``, or None."""
    real_src = os.path.realpath(src)
    if os.path.isdir(src):
        if _inside(real_out, real_src):
            return f"lies inside the input folder {src}"
        return None
    prefix = _tf_prefix(src)
    if prefix is not None:
        real_prefix = os.path.realpath(prefix)
        members = [prefix + ".index", *glob.glob(glob.escape(prefix) + ".data-*")]
        state = os.path.join(os.path.dirname(prefix) or ".", "checkpoint")
        if real_out == real_prefix or real_out.startswith(real_prefix + ".index") \
                or real_out.startswith(real_prefix + ".data-") \
                or any(_same(out, m) for m in members + [state]):
            return f"is a file of the TensorFlow checkpoint {prefix} (its .index, data or 'checkpoint' state file)"
        return None
    if real_out == real_src or _same(out, src):
        return f"is an input, the source itself ({os.path.basename(src) or src})"
    return None


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: str | os.PathLike, inputs: Iterable[Any] = (), *, suffix_hint: str = "") -> str:
    """``out`` as a string, or a :class:`StoreError` naming it when a writer must not replace it.

    Refused: an existing OUT that is not a regular file (folder, FIFO, device, socket: it stays
    what it was), a missing folder, and an OUT that is one of ``inputs`` or lies inside one
    (a folder input, or a TensorFlow checkpoint prefix's files).  ``inputs`` that are not paths
    (models, snapshots in memory) are skipped.
    """
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise StoreError(repr(out), "not an output path; give a file name")
    out = os.fspath(out)
    try:
        st = os.stat(out)  # follows symlinks: a link to /dev/null is /dev/null
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise StoreError(out, f"cannot check it ({e.strerror or e}); nothing was written") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        hint = f", e.g. model{suffix_hint}" if suffix_hint else ""
        raise StoreError(out, f"exists and is {_kind(st.st_mode)}, not a regular file: refused, nothing was written "
                              f"(give a file name{hint})")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise StoreError(out, f"its folder {folder} does not exist: create it first")
    real_out = os.path.realpath(out)
    for src in inputs:
        if not isinstance(src, (str, os.PathLike)) or not os.fspath(src):
            continue
        why = _clash(out, real_out, os.fspath(src))
        if why:
            raise StoreError(out, f"{why}: writing there would destroy what is read; give another output path "
                                  "(nothing was written)")
    return out


def snapshot_inputs(snap: Any) -> list[str]:
    """The files a (lazily loaded) snapshot still reads from: its own path and its lazy params' files."""
    found = [snap.path] if getattr(snap, "path", None) else []
    for params in getattr(snap, "layers", {}).values():
        for prm in params.values():
            p = getattr(getattr(prm, "value", None), "_path", None)
            if isinstance(p, str) and p not in found:
                found.append(p)
    return found
