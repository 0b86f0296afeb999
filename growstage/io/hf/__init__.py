"""Hugging Face checkpoints <-> keras_hub names and layouts, one small module per family (as keras_hub
keeps one ``convert_*.py`` per family): :mod:`.gpt2`, :mod:`.llama`, :mod:`.gemma`, :mod:`.bert`.

Each family module holds a table of :class:`~growstage.io.hf.common.Rule` (one keras_hub param
from one HF tensor, both directions), ``hf_config`` (config.json of a keras_hub backbone, for export)
and ``differences`` (non-weight settings on which a folder and a target disagree).  Pure numpy and
names (the io layer): the readers use the tables to read a folder with keras_hub's names, and
:mod:`growstage.interop.hf.export` runs them backwards to write one.
"""
