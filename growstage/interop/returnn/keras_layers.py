"""The few Keras layers a RETURNN network dict needs that Keras lacks: weightless, serialisable
(registered under the package ``growstage_returnn``; no Lambda layers, so a saved model loads
without running code from the file).

Example::

    >>> import keras, numpy as np
    >>> x = np.arange(6, dtype="f4").reshape(1, 3, 2)
    >>> tuple(Window(3, 1, 1)(x).shape), tuple(TimePad(2, 0)(x).shape), keras.ops.convert_to_numpy(TimeReverse()(x))[0, 0].tolist()
    ((1, 3, 3, 2), (1, 5, 2), [4.0, 5.0])
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

_PACKAGE = "growstage_returnn"


@keras.saving.register_keras_serializable(package=_PACKAGE)
def abs_activation(x: Any) -> Any:
    """RETURNN's ``"abs"`` activation."""
    return ops.abs(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TimeReverse(keras.layers.Layer):
    """Reverses axis 1 (time): a ``go_backwards`` LSTM's output back into input order (RETURNN direction -1)."""

    def call(self, x: Any) -> Any:
        return ops.flip(x, axis=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TimePad(keras.layers.Layer):
    """RETURNN ``pad`` on the time axis: ``left`` and ``right`` frames of ``value``."""

    def __init__(self, left: int, right: int, value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.left, self.right, self.value = int(left), int(right), float(value)

    def call(self, x: Any) -> Any:
        pads = [(0, 0), (self.left, self.right)] + [(0, 0)] * (len(x.shape) - 2)
        return ops.pad(x, pads, constant_values=self.value)

    def compute_output_shape(self, shape: tuple) -> tuple:
        t = None if shape[1] is None else shape[1] + self.left + self.right
        return (shape[0], t, *shape[2:])

    def get_config(self) -> dict:
        return {**super().get_config(), "left": self.left, "right": self.right, "value": self.value}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Window(keras.layers.Layer):
    """RETURNN ``window`` (padding "same", stride 1): ``(B, T, F) -> (B, T, size, F)``, frame ``t`` holding
    frames ``t - left .. t + right``, zeros beyond the ends."""

    def __init__(self, size: int, left: int, right: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.size, self.left, self.right = int(size), int(left), int(right)

    def call(self, x: Any) -> Any:
        t = ops.shape(x)[1]
        xp = ops.pad(x, [(0, 0), (self.left, self.right)] + [(0, 0)] * (len(x.shape) - 2))
        return ops.stack([xp[:, k:k + t] for k in range(self.size)], axis=2)

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (shape[0], shape[1], self.size, *shape[2:])

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "left": self.left, "right": self.right}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AddFeatureDim(keras.layers.Layer):
    """RETURNN conv's ``input_add_feature_dim``: a trailing axis of 1."""

    def call(self, x: Any) -> Any:
        return ops.expand_dims(x, -1)

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (*shape, 1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MergeDims(keras.layers.Layer):
    """RETURNN ``merge_dims`` with ``axes="except_time"``/``"static"``: every axis after time into one."""

    def call(self, x: Any) -> Any:
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self._merged(x.shape)))

    @staticmethod
    def _merged(shape: tuple) -> int:
        n = 1
        for d in shape[2:]:
            n *= int(d)
        return n

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (shape[0], shape[1], self._merged(shape))
