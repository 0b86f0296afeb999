"""RETURNN interop: names and layouts (``names``, ``layouts``), checkpoints, the network-dict
frontend (``frontend``, ``layer_classes``, ``keras_layers``).  Public entry: :mod:`growstage.returnn`."""
