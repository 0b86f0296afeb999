"""Adapters for keras_hub models, one module a family (as keras_hub keeps one ``convert_*.py`` a family).

Loaded on first use once ``keras_hub`` is imported (``growstage.framework.adapters.base.load_optional``):
growstage imports and works without keras_hub.  Each module registers its layers with
``register_adapter`` and its models with ``register_model``, as users register their own.
Keys follow docs/DESIGN.md "keras_hub models": the backbone's inner layer names, no backbone or
task prefix; param names are the tails of Keras's variable paths.
"""
from growstage.framework.adapters.hub import bert, common, gpt2  # noqa: F401  (registration side effects)
from growstage.framework.adapters.hub import gemma, llama, streams  # noqa: F401  (registration side effects)
