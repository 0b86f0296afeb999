"""Types and ranges of RETURNN net-dict options, checked before anything is built.

A value of the wrong type would otherwise reach Keras and come back as a TypeError, a
ValueError or an allocation that never ends (``n_out=1e9``); a string flag would be read as
true (``with_bias="no"``) and a float size rounded (``n_out=2.9``).  Every check here raises a
:class:`NetDictError` naming the layer and the option.

>>> check_options("lin", {"class": "linear", "n_out": 4, "with_bias": False, "dropout": 0.1})
>>> try:
...     check_options("lin", {"class": "linear", "n_out": 2.9})
... except NetDictError as e:
...     print(e)
layer 'lin': option 'n_out' is 2.9, not a whole number from 1 to 65536
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Mapping

from growstage.interop.returnn.layer_classes import NetDictError, fail

MAX_SIZE = 1 << 16  # n_out, window_size, filter sizes: larger is a typo or an allocation bomb


def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and lo <= int(v) <= hi
    ok.what = f"a whole number from {lo} to {hi}"  # type: ignore[attr-defined]
    return ok


def _kind(test: Callable[[Any], bool], what: str) -> Callable[[Any], bool]:
    test.what = what  # type: ignore[attr-defined]
    return test


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


_SIZE = _int_in(1, MAX_SIZE)
_BOOL = _kind(lambda v: isinstance(v, bool), "True or False (a real boolean)")
_STR = _kind(lambda v: isinstance(v, str), "a string")
_OPT_STR = _kind(lambda v: v is None or isinstance(v, str), "a string or None")
_SIZES = _kind(lambda v: _SIZE(v) or (isinstance(v, (list, tuple)) and 0 < len(v) <= 3 and all(_SIZE(x) for x in v)),
               f"a whole number or a list of 1 to 3 of them, each from 1 to {MAX_SIZE}")
_UNIT_FRACTION = _kind(lambda v: _real(v) and 0.0 <= float(v) < 1.0, "a number in [0, 1)")
_POSITIVE = _kind(lambda v: _real(v) and 0.0 < float(v) < 1.0e3, "a positive number (below 1000)")
_MOMENTUM = _kind(lambda v: _real(v) and 0.0 <= float(v) <= 1.0, "a number in [0, 1]")
_FINITE = _kind(lambda v: _real(v) and abs(float(v)) < 1.0e30, "a finite number")
_PAD = _kind(lambda v: _int_in(0, MAX_SIZE)(v) or (isinstance(v, (list, tuple)) and 0 < len(v) <= 2 and all(
    _int_in(0, MAX_SIZE)(x) or (isinstance(x, (list, tuple)) and all(_int_in(0, MAX_SIZE)(y) for y in x))
    for x in v)) or isinstance(v, str), f"a whole number from 0 to {MAX_SIZE} or a pair of them")
_WINDOW_SIDE = _kind(lambda v: v is None or _int_in(0, MAX_SIZE)(v), f"None or a whole number from 0 to {MAX_SIZE}")
_DICT = _kind(lambda v: v is None or isinstance(v, Mapping), "a dict")
_ANY = _kind(lambda v: True, "anything")
_DIRECTION = _kind(lambda v: isinstance(v, int) and not isinstance(v, bool) and v in (1, -1), "1 or -1")
_HASHABLE_OR_NONE = _kind(lambda v: v is None or isinstance(v, str), "a string or None")

CHECKS: dict[str, Callable[[Any], bool]] = {
    "class": _STR, "n_out": _SIZE, "trainable": _BOOL, "is_output_layer": _BOOL, "with_bias": _BOOL,
    "input_add_feature_dim": _BOOL, "use_shift": _BOOL, "use_std": _BOOL, "concat_sources": _BOOL,
    "keep_order": _BOOL, "masked_time": _BOOL, "dropout": _UNIT_FRACTION, "epsilon": _POSITIVE,
    "momentum": _MOMENTUM, "window_size": _SIZE, "window_left": _WINDOW_SIDE, "window_right": _WINDOW_SIDE,
    "stride": _SIZE, "strides": _SIZES, "dilation_rate": _SIZES, "filter_size": _SIZES, "direction": _DIRECTION,
    "unit": _STR, "unit_opts": _DICT, "activation": _HASHABLE_OR_NONE, "kind": _STR, "mode": _STR,
    "value": _FINITE, "padding": _PAD, "target": _OPT_STR, "subnetwork": _DICT, "axes": _kind(
        lambda v: isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v)),
        "a string or a list of strings"),
    "param_version": _int_in(0, 100), "delay_sample_update": _BOOL,
}


def check_sources(layer: str, src: Any) -> list[str]:
    """``from`` as a list of names: a name, or a non-empty list of names."""
    if isinstance(src, str):
        return [src]
    if isinstance(src, (list, tuple)) and src and all(isinstance(s, str) for s in src):
        return list(src)
    raise fail(layer, f"option 'from' is {src!r}: give a layer name or a non-empty list of names")


def check_options(layer: str, spec: Mapping[str, Any]) -> None:
    """Every option of a layer entry whose type or range is known, checked (``from`` included)."""
    for key, value in spec.items():
        if not isinstance(key, str):
            raise fail(layer, f"option {key!r} is not a string")
        test = CHECKS.get(key)
        if test is not None and not test(value):
            raise fail(layer, f"option {key!r} is {value!r}, not {test.what}")  # type: ignore[attr-defined]
    if "from" in spec:
        check_sources(layer, spec["from"])


def check_extern(key: str, spec: Any) -> None:
    """One ``extern_data`` entry: a dict whose dim is a bounded size and whose shape is sizes or None."""
    where = f"extern_data[{key!r}]"
    if not isinstance(spec, Mapping):
        raise NetDictError(f"{where} is {type(spec).__name__}, not a dict such as {{'dim': 40}}")
    if "dim" in spec and not _SIZE(spec["dim"]):
        raise NetDictError(f"{where}: 'dim' is {spec['dim']!r}, not {_SIZE.what}")  # type: ignore[attr-defined]
    shape = spec.get("shape", ())
    if not isinstance(shape, (list, tuple)) or not all(d is None or _SIZE(d) for d in shape):
        raise NetDictError(f"{where}: 'shape' is {shape!r}, not a list of sizes (None for the time axis)")
    if "sparse" in spec and not isinstance(spec["sparse"], bool):
        raise NetDictError(f"{where}: 'sparse' is {spec['sparse']!r}, not True or False")
    if "dtype" in spec and not isinstance(spec["dtype"], str):
        raise NetDictError(f"{where}: 'dtype' is {spec['dtype']!r}, not a string such as 'float32'")
