"""Growing training: schedules, layer-wise construction, `fit`, training checkpoints."""
