"""Other systems' ways in and out: TensorFlow assignment maps, RETURNN's preload, layout
conversions."""
