"""RETURNN users move over: their checkpoints, their network dicts (public module).

- :func:`build_model` / :func:`builder`: a RETURNN network dict as a Keras model named as the
  dict (:mod:`growstage.interop.returnn.frontend`); ``builder(extern_data)`` is a Schedule build function.
- :func:`open_returnn`: a RETURNN TF checkpoint with growstage names and Keras layouts, for
  ``growstage.transfer`` / ``growstage.preload`` (:mod:`growstage.interop.returnn.names`);
  :func:`rules` (``bidirectional=True``: ``L_fw``/``L_bw`` into a Keras ``Bidirectional`` ``L``).
- :func:`to_returnn` / :func:`save_checkpoint`: back to RETURNN's names, layouts and files.
- :class:`WrapEpochValue`: a network-dict value by pretrain epoch, which :func:`growstage.returnn_pretrain`
  resolves as RETURNN does (RETURNN's own class works the same).

Inside growstage, ``import returnn`` still means RETURNN itself (absolute imports); RETURNN is not
needed by any of this.

Example::

    >>> import growstage.returnn as gr
    >>> m = gr.build_model({"output": {"class": "softmax", "n_out": 3, "from": "data"}}, {"data": {"dim": 2}})
    >>> sorted(gr.to_returnn(m))
    ['output/W', 'output/b']
"""
from growstage.interop.returnn.checkpoints import open_returnn, rules, save_checkpoint, to_returnn, units_of
from growstage.interop.returnn.frontend import build_model, builder, load_reports
from growstage.interop.returnn.layer_classes import CLASSES, NetDictError
from growstage.interop.returnn.layouts import (keras_to_nativelstm2, keras_to_standardlstm, nativelstm2_to_keras,
                                               standardlstm_to_keras)
from growstage.interop.returnn.names import from_returnn, to_returnn_names
from growstage.train.epoch_values import WrapEpochValue

__all__ = ["CLASSES", "NetDictError", "WrapEpochValue", "build_model", "builder", "from_returnn", "keras_to_nativelstm2",
           "keras_to_standardlstm", "load_reports", "nativelstm2_to_keras", "open_returnn", "rules", "save_checkpoint",
           "standardlstm_to_keras", "to_returnn", "to_returnn_names", "units_of"]
