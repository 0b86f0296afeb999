"""Per-layer-type knowledge of Keras 3: param names, split info, axis roles.

This package is the only place in growstage that knows Keras layer classes.
Importing it registers the built-in adapters.
"""
from growstage.framework.adapters import keras_layers, recurrent  # noqa: F401  (registration side effects)
from growstage.framework.adapters.base import Adapter, ParamSpec, find_adapter, register_adapter, unregister_adapter

__all__ = ["Adapter", "ParamSpec", "find_adapter", "register_adapter", "unregister_adapter"]
