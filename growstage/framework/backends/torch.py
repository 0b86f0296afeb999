"""PyTorch backend: variables are written in place, so a snapshot holds a clone on the same device.

Example::

    >>> import numpy as np
    >>> to_numpy(native(np.ones(2), "float32")).tolist()
    [1.0, 1.0]
"""
from __future__ import annotations

from typing import Any

import numpy as np

# read_tensor clones: a variable is written in place, so a snapshot cannot share its buffer
READS_ALIAS = False


DEVICE_RESIZE = True  # transfers slice / pad on the device (device_values.resize_device)


def variable_class() -> None:
    """None: a model is built normally.  Keras's torch layers register each variable's tensor in a
    ``torch.nn.ParameterDict`` when built, so a variable created later from its value would leave
    the layer's ``parameters()`` pointing at a placeholder."""
    return None


def is_native(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def read_tensor(variable: Any) -> Any:
    value = getattr(variable, "value", variable)
    if not is_native(value):
        return None
    return value.detach().clone()  # the variable is written in place (assign, optimizer steps)


def to_numpy(tensor: Any) -> np.ndarray:
    arr = tensor.detach().cpu().numpy()  # a view on CPU; may share the tensor's storage
    arr.flags.writeable = False
    return arr


def _torch_dtype(dtype: Any) -> Any:
    from keras.src.backend.torch.core import to_torch_dtype

    return to_torch_dtype(np.dtype(dtype).name if not isinstance(dtype, str) else dtype)


def native(value: Any, dtype: Any) -> Any:
    """A tensor the variable may own: a device array is copied once (the source must stay intact)."""
    import torch
    from keras.src.backend.torch.core import get_device

    if is_native(value):
        return value.detach().to(dtype=_torch_dtype(dtype), copy=True)
    arr = np.array(value, dtype=np.dtype(dtype), order="C")  # torch wants a writable array it may share
    return torch.from_numpy(arr).to(get_device())


def cast(x: Any, dtype: Any) -> Any:
    return x.to(_torch_dtype(dtype))


def filled(fill: Any, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
    import torch

    if np.ndim(fill) == 0 and not is_native(fill):
        return torch.full(shape, fill, dtype=_torch_dtype(dtype), device=like.device)
    return native(fill, dtype)  # a copy: the fill (often the target's current value) is kept for undo


def place(out: Any, index: tuple[slice, ...], block: Any) -> Any:
    out[index] = block
    return out


def finish(out: Any) -> Any:
    return out


def rng_state() -> list[int]:
    """torch's global CPU generator (DataLoader's shuffle draws from it), as a list of bytes."""
    import torch

    return torch.get_rng_state().tolist()


def set_rng_state(state: list[int] | None) -> None:
    import torch

    if state is not None:
        torch.set_rng_state(torch.tensor(state, dtype=torch.uint8))
