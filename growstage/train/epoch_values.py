"""RETURNN's ``WrapEpochValue``: a value of a network dict that depends on the pretrain epoch.

:func:`~growstage.returnn_pretrain` resolves it per epoch exactly as RETURNN's
``Pretrain._resolve_wrapped_values`` does: the epochs count from 1 (RETURNN's), every epoch of a
stage's repetitions gets its own value, dicts are searched at every depth, a list or tuple only
when one of its own items is wrapped (RETURNN looks no deeper into it), and a value the function
returns is not resolved again.  RETURNN's own ``returnn.pretrain.WrapEpochValue`` works the same
(RETURNN need not be installed for growstage's).

Example::

    >>> net = {"h": {"class": "linear", "dropout": WrapEpochValue(lambda epoch: 0.1 * epoch)}}
    >>> resolve_epoch_values(net, epoch=2)["h"]["dropout"], wrapped_at(net)
    (0.2, "layer 'h' option 'dropout'")
"""
from __future__ import annotations

from typing import Any, Callable, Mapping


class WrapEpochValue:
    """A network-dict value computed per pretrain epoch: ``func(epoch=n)``, ``n`` counted from 1."""

    def __init__(self, func: Callable[..., Any]):
        self.func = func

    def get_value(self, epoch: int) -> Any:
        """The value in ``epoch`` (RETURNN's numbering: the first epoch is 1)."""
        return self.func(epoch=epoch)

    def __repr__(self) -> str:
        return f"WrapEpochValue({getattr(self.func, '__name__', self.func)!s})"


def is_wrapped(value: Any) -> bool:
    """growstage's or RETURNN's ``WrapEpochValue`` (RETURNN's known by its class, not imported)."""
    cls = type(value)
    return isinstance(value, WrapEpochValue) or (cls.__name__ == "WrapEpochValue"
                                                 and cls.__module__ == "returnn.pretrain")


def _resolve(value: Any, epoch: int) -> Any:
    if is_wrapped(value):
        return value.get_value(epoch=epoch)
    if isinstance(value, (tuple, list)):
        if not any(is_wrapped(x) for x in value):
            return value  # as RETURNN: a list is searched one level deep only
        return type(value)([_resolve(x, epoch) for x in value])
    if isinstance(value, dict):
        done = {k: _resolve(value[k], epoch) for k in sorted(value, key=str)}  # RETURNN's call order
        return {k: done[k] for k in value}
    return value


def resolve_epoch_values(net: Mapping[str, Any], epoch: int) -> dict:
    """``net`` with every ``WrapEpochValue`` RETURNN resolves replaced by its value in ``epoch`` (from 1)."""
    return _resolve(dict(net), epoch)


def wrapped_at(value: Any, where: str = "") -> str | None:
    """Where the first ``WrapEpochValue`` in a network dict is (``layer 'h' option 'dropout'``), or None."""
    if is_wrapped(value):
        return where or "the value"
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        if not where:
            here = f"network option {key!r}" if str(key).startswith("#") else f"layer {key!r}"
        elif where.startswith("layer ") and " option " not in where:
            here = f"{where} option {key!r}"
        else:
            here = f"{where}[{key!r}]"
        found = wrapped_at(item, here)
        if found:
            return found
    return None
