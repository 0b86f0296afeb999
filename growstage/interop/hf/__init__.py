"""Writing a keras_hub model as a Hugging Face folder (:mod:`.export`); the name and layout tables it runs
backwards live in :mod:`growstage.io.hf`."""
