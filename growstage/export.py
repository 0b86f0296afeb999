"""Export to other frameworks: PyTorch state_dicts and safetensors files, and back.

See :mod:`growstage.interop.torch_layouts` for the table of conversions.

Example::

    >>> import keras, growstage
    >>> x = keras.Input((3,))
    >>> model = keras.Model(x, keras.layers.Dense(2, name="out")(x))
    >>> sd = growstage.export.to_torch(model, naming={"out": "head"})
    >>> sorted(sd), tuple(sd["head.weight"].shape)
    (['head.bias', 'head.weight'], (2, 3))
"""
from __future__ import annotations

from growstage.interop.torch_export import export_state_dict, from_torch, save_safetensors, to_torch  # noqa: F401
from growstage.interop.torch_layouts import KINDS, TorchLayoutError  # noqa: F401
from growstage.interop.hf.export import export_hf  # noqa: F401

__all__ = ["KINDS", "TorchLayoutError", "export_hf", "export_state_dict", "from_torch", "save_safetensors", "to_torch"]
