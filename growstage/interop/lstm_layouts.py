"""Known variant conversions between frameworks' parameter layouts.  numpy only.

TF1 ``LSTMCell`` / ``LSTMBlockCell`` store one ``kernel`` of shape
``(n_in + n, 4n)`` (input rows, then recurrent rows) and a ``bias`` of
``4n``, gates in the order i, j (the candidate), f, o; ``forget_bias`` (1.0
by default) is added to the f gate at run time and is not stored.  A Keras 3
``LSTM`` keeps ``kernel`` ``(n_in, 4n)``, ``recurrent_kernel`` ``(n, 4n)``
and ``bias`` ``4n``, gates i, f, c, o, and adds nothing at run time.  So the
conversion reorders the gate blocks, splits the kernel, and adds the cell's
``forget_bias`` to the f block of the bias: pass the ``forget_bias`` the TF1
cell was built with (0.0 for a cell built with ``forget_bias=0``).  Peepholes
and projections (``use_peepholes``, ``num_proj``) have no Keras LSTM
counterpart.

Example::

    >>> import numpy as np
    >>> n, n_in = 2, 3
    >>> kernel = np.arange((n_in + n) * 4 * n, dtype="f4").reshape(n_in + n, 4 * n)
    >>> v = tf1_lstm_to_keras(kernel, np.zeros(4 * n, "f4"), forget_bias=1.0)
    >>> v["cell/kernel"].shape, v["cell/recurrent_kernel"].shape, v["cell/bias"].tolist()
    ((3, 8), (2, 8), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from growstage.core.errors import ShapeError

# Gate blocks: TF1 LSTMCell stores i, j (cell input), f, o; Keras i, f, c, o.
_KERAS_FROM_TF1 = (0, 2, 1, 3)  # Keras block b is TF1 block _KERAS_FROM_TF1[b]


def _reorder(a: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([a[..., k * n:(k + 1) * n] for k in _KERAS_FROM_TF1], axis=-1)


def tf1_lstm_to_keras(kernel: Any, bias: Any, *, forget_bias: float = 1.0) -> dict[str, np.ndarray]:
    """Keras 3 LSTM values (``cell/kernel``, ``cell/recurrent_kernel``, ``cell/bias``) from a TF1 LSTM cell."""
    kernel, bias = np.asarray(kernel), np.asarray(bias)
    if kernel.ndim != 2 or kernel.shape[1] % 4 or bias.shape != (kernel.shape[1],):
        raise ShapeError(f"a TF1 LSTM cell has kernel (n_in + n, 4n) and bias (4n,); got {kernel.shape} and {bias.shape}")
    n = kernel.shape[1] // 4
    n_in = kernel.shape[0] - n
    if n_in <= 0:
        raise ShapeError(f"kernel {kernel.shape} has no input rows for {n} units (peepholes/projections unsupported)")
    k = _reorder(kernel, n)
    b = _reorder(bias, n).copy()
    b[n:2 * n] += np.asarray(forget_bias, dtype=b.dtype)
    return {"cell/kernel": np.ascontiguousarray(k[:n_in]), "cell/recurrent_kernel": np.ascontiguousarray(k[n_in:]),
            "cell/bias": b}


def keras_lstm_to_tf1(values: dict[str, Any], *, forget_bias: float = 1.0) -> dict[str, np.ndarray]:
    """The inverse of :func:`tf1_lstm_to_keras`: ``{"kernel", "bias"}`` of a TF1 LSTM cell (for export)."""
    w, u, b = (np.asarray(values[k]) for k in ("cell/kernel", "cell/recurrent_kernel", "cell/bias"))
    n = u.shape[0]
    inverse = np.argsort(_KERAS_FROM_TF1)
    k = np.concatenate([w, u], axis=0)
    b = b.copy()
    b[n:2 * n] -= np.asarray(forget_bias, dtype=b.dtype)
    return {"kernel": np.concatenate([k[:, j * n:(j + 1) * n] for j in inverse], axis=1),
            "bias": np.concatenate([b[j * n:(j + 1) * n] for j in inverse])}
