"""Keras initializers that read from checkpoints (public module).

>>> from growstage.initializers import FromCheckpoint
>>> FromCheckpoint("model.npz", "enc/kernel").get_config()["mode"]
'exact'
"""
from growstage.interop.initializers import FromCheckpoint

__all__ = ["FromCheckpoint"]
