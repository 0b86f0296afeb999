"""Optional dependencies, imported on use, with an error that names the missing package.

Example::

    >>> require("numpy", "reading an npz file").__name__
    'numpy'
"""
from __future__ import annotations

import importlib
from types import ModuleType

from growstage.core.errors import GrowstageError

_PIP = {"tensorflow": "tensorflow", "jax": "growstage[jax]", "torch": "growstage[torch]",
        "safetensors": "growstage[sharded]", "safetensors.numpy": "growstage[sharded]"}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what``, or raise a GrowstageError naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise GrowstageError(f"{what} needs {module}, which is not installed: pip install "
                             f"\"{_PIP.get(module, module)}\"; the rest of growstage works without it") from e


def require_tensorflow(what: str) -> ModuleType:
    """TensorFlow for ``what`` (TF checkpoints, ``init_from_checkpoint`` on TF1 files)."""
    return require("tensorflow", what)
