"""Describe a Keras initializer as a :class:`~growstage.core.init_blocks.InitSpec` (numbers only),
so the ``init-blocks`` fill can draw new entries from its distribution without running it.

Example::

    >>> import keras
    >>> init_spec(keras.initializers.HeNormal()).mode
    'fan_in'
"""
from __future__ import annotations

from typing import Any

from growstage.core.init_blocks import InitSpec


def init_spec(initializer: Any) -> InitSpec | None:
    """The :class:`InitSpec` of a Keras initializer; None for one it cannot describe (custom
    initializers, variance scaling over explicit axes), which the caller fills with ``init``."""
    if initializer is None:
        return None
    import keras

    inits = keras.initializers
    cfg = initializer.get_config() if hasattr(initializer, "get_config") else {}
    if isinstance(initializer, inits.VarianceScaling):
        axes = cfg.get("input_axes"), cfg.get("output_axes")
        if axes[0] is None or axes[1] is None:
            axes = None, None  # Keras uses the axes only when both are given
        return InitSpec("variance_scaling", scale=float(initializer.scale), mode=str(initializer.mode),
                        distribution=str(initializer.distribution),
                        input_axes=None if axes[0] is None else tuple(int(a) for a in axes[0]),
                        output_axes=None if axes[1] is None else tuple(int(a) for a in axes[1]))
    if isinstance(initializer, inits.Orthogonal):
        return InitSpec("orthogonal", gain=float(cfg.get("gain", 1.0)))
    if isinstance(initializer, inits.TruncatedNormal):
        return InitSpec("truncated_normal", mean=float(cfg["mean"]), stddev=float(cfg["stddev"]))
    if isinstance(initializer, inits.RandomNormal):
        return InitSpec("normal", mean=float(cfg["mean"]), stddev=float(cfg["stddev"]))
    if isinstance(initializer, inits.RandomUniform):
        return InitSpec("uniform", minval=float(cfg["minval"]), maxval=float(cfg["maxval"]))
    if isinstance(initializer, inits.Zeros):
        return InitSpec("constant", value=0.0)
    if isinstance(initializer, inits.Ones):
        return InitSpec("constant", value=1.0)
    if isinstance(initializer, inits.Constant):
        try:
            return InitSpec("constant", value=float(cfg["value"]))
        except (TypeError, ValueError):
            return None  # an array constant: no per-entry distribution
    return None
