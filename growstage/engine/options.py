"""Every transfer option in one frozen dataclass: defaults in one place, types checked at the entry point.

:func:`~growstage.plan`, :func:`~growstage.transfer`, :func:`~growstage.rebuild`, a schedule's
stages and the command line all build a :class:`TransferOptions`; an unknown keyword fails with the
closest option names, a value of the wrong type fails naming the option and what it takes.

Example::

    >>> o = TransferOptions(mode="subset"); o.mode == "subset", o.fill == "init"
    (True, True)
    >>> TransferOptions.from_kwargs(mdoe="subset")
    Traceback (most recent call last):
    ...
    growstage.core.errors.GrowstageError: unknown option 'mdoe'; did you mean 'mode' or 'modes'?
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from growstage.core.errors import GrowstageError, did_you_mean
from growstage.core.vocab import Fill, Mode

_BOOLS = ("ignore_missing", "ignore_unused", "allow_new_layers", "allow_cast", "allow_auto_names", "allow_large",
          "strict_preserve")


@dataclass(frozen=True)
class TransferOptions:
    """How a source meets a target: see :func:`growstage.plan` for the meaning of each field."""

    mode: str = Mode.EXACT
    fill: Any = Fill.INIT
    modes: Mapping[str, str] = field(default_factory=dict)
    fills: Mapping[str, Any] = field(default_factory=dict)
    custom_param_importer: Mapping[str, Callable | str] = field(default_factory=dict)
    rename: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)  # a tuple: one source, many targets
    ignore: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None  # target layers to load; None: all
    ignore_missing: bool = False
    ignore_unused: bool = False
    allow_new_layers: bool = False
    allow_cast: bool = False
    allow_auto_names: bool = False
    allow_large: bool = False  # HDF5 datasets declaring far more bytes than their file holds
    strict_preserve: bool = False  # a preserving fill that cannot keep the function: an error, not a note
    custom_missing_load_func: Callable[[str, tuple, Any], Any] | None = None
    fill_seed: int = 0
    fill_noise: float = 0.0
    on_nonfinite: str = "report"
    on_values: Callable[[dict], dict | None] | None = None
    rules: Any = None
    source_model: Any = None
    preset: str | None = None  # how a Hugging Face folder's names map to keras_hub's (hf-gpt2, ...)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "mode", _mode(self.mode, "mode"))
        set_(self, "fill", _fill(self.fill, "fill"))
        set_(self, "modes", _mapping(self.modes, "modes", lambda k, v: _mode(v, f"modes[{k!r}]")))
        set_(self, "fills", _mapping(self.fills, "fills", lambda k, v: _fill(v, f"fills[{k!r}]")))
        set_(self, "custom_param_importer", _mapping(self.custom_param_importer, "custom_param_importer", _importer))
        set_(self, "rename", _mapping(self.rename, "rename", _name_value))
        set_(self, "ignore", name_list(self.ignore, "ignore"))
        if self.only is not None:
            set_(self, "only", name_list(self.only, "only"))
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise GrowstageError(f"{name} must be True or False, not {getattr(self, name)!r}")
        for name in ("custom_missing_load_func", "on_values"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise GrowstageError(f"{name} must be a callable or None, not {type(getattr(self, name)).__name__}")
        if isinstance(self.fill_seed, bool) or not isinstance(self.fill_seed, numbers.Integral):
            raise GrowstageError(f"fill_seed must be an int, not {self.fill_seed!r}")
        noise = self.fill_noise
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not math.isfinite(noise) or noise < 0:
            raise GrowstageError(f"fill_noise must be a finite number >= 0, not {noise!r}")
        set_(self, "fill_seed", int(self.fill_seed))
        set_(self, "fill_noise", float(noise))
        if self.preset is not None:
            from growstage.io.readers.hf_presets import family

            family(self.preset)  # an unknown preset fails here, listing the known ones
        if self.on_nonfinite not in ("report", "error"):
            raise GrowstageError(f"on_nonfinite must be 'report' or 'error', not {self.on_nonfinite!r}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_kwargs(cls, base: "TransferOptions | None" = None, **kwargs: Any) -> "TransferOptions":
        """Options from keywords (over ``base``); an unknown keyword is an error with suggestions."""
        known = cls.names()
        for key in kwargs:
            if key not in known:
                raise GrowstageError(f"unknown option {key!r}{did_you_mean(key, known)}")
        return replace(base, **kwargs) if base is not None else cls(**kwargs)

    def mode_for(self, layer: str) -> str:
        return self.modes.get(layer, self.mode)

    def fill_for(self, layer: str) -> Any:
        return self.fills.get(layer, self.fill)


def _mode(value: Any, where: str) -> Mode:
    try:
        return Mode(value)
    except (ValueError, TypeError):
        names = [m.value for m in Mode]
        raise GrowstageError(f"unknown mode {value!r} for {where}{did_you_mean(str(value), names)} "
                             f"(modes: {', '.join(names)})") from None


def _fill(value: Any, where: str) -> Any:
    """A fill name, a finite number, or a callable ``(shape, dtype) -> array``."""
    if isinstance(value, str):
        try:
            return Fill(value)
        except ValueError:
            names = [f.value for f in Fill]
            raise GrowstageError(f"unknown fill {value!r} for {where}{did_you_mean(value, names)} (fills: "
                                 f"{', '.join(names)}, a number, or a callable (shape, dtype) -> array)") from None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise GrowstageError(f"{where} is {value!r}: a fill must be finite (it would write NaN/Inf weights)")
        return value
    if callable(value):
        return value
    raise GrowstageError(f"{where} must be a fill name, a number or a callable (shape, dtype) -> array, "
                         f"not {type(value).__name__}")


def _mapping(value: Any, where: str, check: Callable[[str, Any], Any]) -> Mapping[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise GrowstageError(f"{where} must be a dict {{layer name: value}}, not {type(value).__name__}")
    out = {}
    for key, v in value.items():
        if not isinstance(key, str):
            raise GrowstageError(f"{where}: keys are layer names (str), not {key!r}")
        out[key] = check(key, v)
    return MappingProxyType(out)


def _importer(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return _mode(value, f"custom_param_importer[{key!r}]")
    if callable(value):
        return value
    raise GrowstageError(f"custom_param_importer[{key!r}] is a {type(value).__name__}; "
                         "give a callable (layer, values, *, context) or a mode string")


def _name_value(key: str, value: Any) -> str | tuple[str, ...]:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)  # one source layer copied into several targets (depth by stacking)
    if not isinstance(value, str):
        raise GrowstageError(f"rename[{key!r}] must be a layer name (str) or a non-empty list of them, not {value!r}")
    return value


def name_list(value: Any, where: str) -> tuple[str, ...]:
    """An option holding names as a tuple: one bare name, or any iterable of str; else an error naming ``where``.

    Example::

        >>> name_list("enc", "only"), name_list(["a", "b"], "ignore")
        (('enc',), ('a', 'b'))
    """
    if isinstance(value, str):
        return (value,)  # one name given bare
    try:
        items = tuple(value)
    except TypeError:
        raise GrowstageError(f"{where} must be a list of names, not {type(value).__name__}") from None
    for item in items:
        if not isinstance(item, str):
            raise GrowstageError(f"{where}: every entry is a name (str), not {item!r}")
    return items
