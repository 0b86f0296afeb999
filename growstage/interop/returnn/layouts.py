"""RETURNN (TF backend) param layouts <-> Keras 3 layouts.  numpy only.

- ``nativelstm2`` (also what RETURNN's units ``lstm`` and ``lstmp`` build): ``rec/W`` ``(n_in, 4n)``,
  ``rec/W_re`` ``(n, 4n)``, ``rec/b`` ``(4n,)``, gate blocks cell-in, input, forget, output (c, i, f, o);
  nothing is added at run time.  Keras LSTM: i, f, c, o.  A pure reorder: exact.
- ``standardlstm`` (TF's ``LSTMCell``): ``rec/lstm_cell/kernel`` ``(n_in + n, 4n)``, gates i, j, f, o,
  and ``forget_bias`` (1.0) added to the f gate at run time, not stored: see
  :func:`growstage.interop.lstm_layouts.tf1_lstm_to_keras`, which this reuses.  The fold is float
  arithmetic (``b_f + 1.0``), the only conversion here that is not a move of bits.
- linear / softmax / conv: ``W``, ``b`` have Keras's layout already (conv ``W`` is
  ``filter_size + (n_in, n_out)`` as Keras's kernel).
- batch_norm: ``v2_mean`` etc. are ``(n,)``; param versions 0 and 1 store ``(1, ..., 1, n)``: flattened.

Example::

    >>> import numpy as np
    >>> n = 1
    >>> W, W_re, b = np.zeros((2, 4), "f4"), np.zeros((1, 4), "f4"), np.arange(4, dtype="f4")  # c, i, f, o
    >>> nativelstm2_to_keras(W, W_re, b)["cell/bias"].tolist()  # i, f, c, o
    [1.0, 2.0, 0.0, 3.0]
    >>> keras_to_nativelstm2(nativelstm2_to_keras(W, W_re, b))["b"].tolist()
    [0.0, 1.0, 2.0, 3.0]
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from growstage.core.errors import ShapeError
from growstage.interop.lstm_layouts import keras_lstm_to_tf1, tf1_lstm_to_keras

# Keras gate block k (i, f, c, o) is NativeLstm2 block _NATIVE_OF_KERAS[k] (c, i, f, o)
_NATIVE_OF_KERAS = (1, 2, 0, 3)
_KERAS_OF_NATIVE = tuple(int(i) for i in np.argsort(_NATIVE_OF_KERAS))


def _blocks(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    n = a.shape[-1] // 4
    return np.ascontiguousarray(np.concatenate([a[..., k * n:(k + 1) * n] for k in order], axis=-1))


def nativelstm2_to_keras(W: Any, W_re: Any, b: Any) -> dict[str, np.ndarray]:
    """Keras LSTM values (``cell/kernel``, ``cell/recurrent_kernel``, ``cell/bias``) from NativeLstm2's."""
    W, W_re, b = np.asarray(W), np.asarray(W_re), np.asarray(b)
    if W.ndim != 2 or W.shape[1] % 4 or W_re.shape != (W.shape[1] // 4, W.shape[1]) or b.shape != (W.shape[1],):
        raise ShapeError(f"a NativeLstm2 has W (n_in, 4n), W_re (n, 4n), b (4n,); "
                         f"got {W.shape}, {W_re.shape}, {b.shape}")
    return {"cell/kernel": _blocks(W, _NATIVE_OF_KERAS), "cell/recurrent_kernel": _blocks(W_re, _NATIVE_OF_KERAS),
            "cell/bias": _blocks(b, _NATIVE_OF_KERAS)}


def keras_to_nativelstm2(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of :func:`nativelstm2_to_keras`: ``{"W", "W_re", "b"}``."""
    w, u, b = (np.asarray(values[k]) for k in ("cell/kernel", "cell/recurrent_kernel", "cell/bias"))
    return {"W": _blocks(w, _KERAS_OF_NATIVE), "W_re": _blocks(u, _KERAS_OF_NATIVE), "b": _blocks(b, _KERAS_OF_NATIVE)}


def standardlstm_to_keras(kernel: Any, bias: Any, *, forget_bias: float = 1.0) -> dict[str, np.ndarray]:
    """Keras LSTM values from TF's ``LSTMCell`` (RETURNN ``standardlstm``), ``forget_bias`` folded into f."""
    return tf1_lstm_to_keras(kernel, bias, forget_bias=forget_bias)


def keras_to_standardlstm(values: Mapping[str, Any], *, forget_bias: float = 1.0) -> dict[str, np.ndarray]:
    """The inverse of :func:`standardlstm_to_keras`: ``{"kernel", "bias"}`` with ``forget_bias`` taken out."""
    return keras_lstm_to_tf1(dict(values), forget_bias=forget_bias)


def batch_norm_to_keras(value: Any) -> np.ndarray:
    """A batch_norm statistic or scale as Keras keeps it: ``(n,)`` (param versions 0/1 store ``(1, .., n)``)."""
    value = np.asarray(value)
    if value.ndim > 1 and any(d != 1 for d in value.shape[:-1]):
        raise ShapeError(f"a batch_norm param has one non-broadcast axis (the last); got {value.shape}")
    return value.reshape(value.shape[-1:]) if value.ndim else value
