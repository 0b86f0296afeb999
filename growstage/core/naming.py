"""Names as Keras derives them from class names (numpy-free string rules)."""
from __future__ import annotations

import re


def snake_case(name: str) -> str:
    """A class name as Keras turns it into default layer names and file keys.

    >>> snake_case("Conv1D"), snake_case("MultiHeadAttention")
    ('conv1d', 'multi_head_attention')
    """
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
