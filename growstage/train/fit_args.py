"""The keywords of :func:`growstage.fit`: its own, and those it passes on to ``keras.Model.fit``, checked
when ``fit`` is called so that a typo fails at once, not at the first epoch.

Example::

    >>> check_fit_kwargs({"batch_size": 4})
    >>> try:
    ...     check_fit_kwargs({"checkpoint_dri": "ckpt"})
    ... except GrowstageError as e:
    ...     print(str(e)[:60])
    fit: unknown keyword 'checkpoint_dri': neither growstage.fit
"""
from __future__ import annotations

import inspect
from typing import Any

import keras

from growstage.core.errors import GrowstageError, did_you_mean

_OWN = ("schedule", "x", "y", "epochs", "compile", "checkpoint_dir", "keep", "resume", "seed", "strategy",
        "reset_optimizer", "log", "on_epoch_end", "allow_auto_names", "preload_from_files", "release_traces",
        "prepare_ahead")


def check_fit_kwargs(kwargs: dict[str, Any]) -> None:
    """Every keyword ``fit`` passes on must be one ``model.fit`` takes (a typo fails now, not at epoch 1)."""
    takes = [n for n in inspect.signature(keras.Model.fit).parameters if n not in ("self", "kwargs")]
    for key in kwargs:
        if key in ("initial_epoch",) or key not in takes:
            why = "fit counts epochs itself (epochs=, resume=)" if key == "initial_epoch" else \
                f"neither growstage.fit nor model.fit takes it{did_you_mean(key, list(_OWN) + takes)}"
            raise GrowstageError(f"fit: unknown keyword {key!r}: {why}")
