"""A directory of per-epoch checkpoint files: names, rotation, and the latest complete one.

numpy and h5py only, so that a process that just writes or checks files
does not import a framework.  Several writers may share a directory: each
writes under a temporary name that carries its pid and renames atomically,
so a reader sees a complete file or none; stale temporary files of dead
writers are removed by the next :func:`latest_checkpoint`.

Example::

    >>> import numpy as np, tempfile
    >>> from growstage.core.values import Snapshot, Param
    >>> d = tempfile.mkdtemp()
    >>> for e in range(4):
    ...     _ = save_checkpoint(d, Snapshot({"w": {"v": Param(np.full(2, e))}}, meta={"epoch": e}), epoch=e, keep=2)
    >>> [e for e, _ in list_checkpoints(d)], latest_checkpoint(d)[1].meta["epoch"]
    ([2, 3], 3)
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

from growstage.core.errors import StoreError
from growstage.io.integrity import digest_status, verify_isolated
from growstage.io.store import clean_stale_tmp, load, save
from growstage.core.values import Snapshot

# Training checkpoints keep optimizer slots beside the params under this pseudo-layer (train/checkpoints.py).
OPTIMIZER_SCOPE = "@optimizer"
# epoch-NNNN.h5: one HDF5 file; epoch-NNNN: a sharded snapshot folder (a model on a keras.distribution mesh)
_NAME = re.compile(r"^epoch-(\d{4,})(\.h5)?$")


def checkpoint_path(directory: str | os.PathLike, epoch: int, *, sharded: bool = False) -> Path:
    return Path(directory) / (f"epoch-{epoch:04d}" if sharded else f"epoch-{epoch:04d}.h5")


def save_checkpoint(directory: str | os.PathLike, snap: Snapshot, *, epoch: int, keep: int = 3,
                    sharded: bool = False) -> Path:
    """Atomically write ``snap`` as epoch ``epoch``'s file (``sharded``: folder) and drop all but the
    newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    path = save(snap, checkpoint_path(directory, epoch, sharded=sharded), sharded=sharded)
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        try:
            shutil.rmtree(old) if os.path.isdir(old) else os.unlink(old)
        except OSError:  # another writer removed it first
            pass
    return path


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, str]]:
    """``(epoch, path)`` of every checkpoint file name, oldest first (not verified)."""
    if not os.path.isdir(directory):
        return []
    out = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m and (m.group(2) or os.path.isdir(os.path.join(directory, name))):
            out.append((int(m.group(1)), os.path.join(directory, name)))
    return sorted(out)


def verify(snap: Snapshot) -> None:
    """Read every dataset once (checksums verified); raises :class:`StoreError` on damage."""
    for params in snap.layers.values():
        for prm in params.values():
            prm.read()


def open_verified(path: str) -> Snapshot:
    """Load ``path`` and read every dataset once; raises on any damage, and never crashes the caller.

    The cheap check first: a format v2 file carries a whole-file digest that plain file I/O
    checks (:func:`growstage.io.integrity.digest_status`).  A matching digest means the bytes
    are exactly what a growstage writer produced, which HDF5 reads safely, so the file is
    opened in this process; a mismatch is damage, refused before HDF5 sees a byte.  Only a file
    without a digest (format v1) is first verified in a child process
    (:func:`~growstage.io.integrity.verify_isolated`), since a flipped bit can make HDF5
    segfault or spin; a crash or hang there ends the child, and the file counts as damaged.
    The common path (v2, intact) costs one extra sequential read of the file and no process.
    The digest guards against accidents (bit rot, torn copies), not against someone who
    crafts a file and recomputes its CRC: that is a checksum, not a signature.

    >>> import numpy as np, tempfile
    >>> p = str(save({"l": {"w": np.ones(2)}}, os.path.join(tempfile.mkdtemp(), "s.h5")))
    >>> with open_verified(p) as snap:
    ...     print(snap["l"]["w"].read())
    [1. 1.]
    """
    if os.path.isdir(path):  # a sharded folder: its index checksummed, every block's CRC read below
        status = "sharded"
    else:
        status = digest_status(path)
    if status.startswith("mismatch"):
        raise StoreError(path, status[len("mismatch: "):] + ": damaged")
    if status == "absent":
        problem = verify_isolated(path)
        if problem is not None:
            raise StoreError(path, problem)
    snap = load(path)
    try:
        verify(snap)
    except BaseException:
        snap.close()
        raise
    return snap


def latest_checkpoint(directory: str | os.PathLike) -> tuple[str, Snapshot] | None:
    """The newest checkpoint that loads and whose every dataset verifies; damaged ones are skipped.

    A candidate that fails for *any* reason (an exception of any type, a crash or hang of the
    isolated check: see :func:`open_verified`) is skipped with a warning naming the file and the
    reason; the same lines are in the returned snapshot's ``notes``, so ``fit(resume=True)``
    resumes from the newest intact file and says which it skipped.  Also removes temporary files
    that dead writers left behind.
    """
    if os.path.isdir(directory):
        clean_stale_tmp(directory)
    skipped: list[str] = []
    for _, path in reversed(list_checkpoints(directory)):
        try:
            snap = open_verified(path)
        except Exception as e:  # anything at all: the next older file may still be sound
            text = str(e) if isinstance(e, StoreError) else f"{path}: {type(e).__name__}: {e}"
            skipped.append(f"skipped damaged checkpoint {' '.join(text.split())}")
            warnings.warn(skipped[-1], RuntimeWarning, stacklevel=2)
            continue
        snap.notes.extend(skipped)
        return path, snap
    return None


def resolve_training_dir(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(path, note)``: a directory of ``epoch-NNNN.h5`` files (what ``fit(checkpoint_dir=...)``
    writes) becomes its latest verified epoch file; any other path is returned as given.

    A directory holding a TensorFlow ``checkpoint`` file is a TF checkpoint and stays as it is.
    """
    path = os.fspath(path)
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, "checkpoint")) or not list_checkpoints(path):
        return path, None
    found = latest_checkpoint(path)
    if found is None:
        names = ", ".join(os.path.basename(p) for _, p in list_checkpoints(path))
        raise StoreError(path, f"a training checkpoint directory, but none of its files verifies ({names})")
    found[1].close()
    return found[0], f"{path}: the latest verified training checkpoint is {os.path.basename(found[0])}"


def params_only(snap: Snapshot) -> Snapshot:
    """``snap`` without a training checkpoint's optimizer state (a note says so when there was some)."""
    opt = [l for l in snap.layers if l == OPTIMIZER_SCOPE or l.startswith(OPTIMIZER_SCOPE + "/")]
    if not opt:
        return snap
    layers = {l: ps for l, ps in snap.layers.items() if l not in opt}
    note = f"optimizer state of {len(opt) - 1} layers left out (a training checkpoint)"
    return Snapshot(layers, meta=snap.meta, notes=list(snap.notes) + [note], path=snap.path, closer=snap.closer)
