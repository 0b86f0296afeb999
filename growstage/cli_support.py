"""What the command line needs besides its commands: a strict parser, hints in flag syntax, and a
quiet import of Keras.

* :class:`Parser` never accepts an abbreviated flag (``--mod`` for ``--mode``: a flag added later
  must not silently change an old command), answers an unknown subcommand with the closest ones,
  and prints the usage of the subcommand that failed.
* :func:`cli_hint` rewrites the library's hints, written as Python keywords (``mode='subset'``,
  ``ignore_missing=True``), as the flags to type (``--mode subset``, ``--ignore-missing``).
* :func:`quiet_keras` imports Keras (and its backend) with the backend's C++ log lines held back:
  TensorFlow writes them to file descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says.

Example::

    >>> p = Parser(prog="tool")
    >>> _ = p.add_argument("--ignore-missing", action="store_true")
    >>> _ = p.add_argument("--mode")
    >>> cli_hint("pass ignore_missing=True, or use mode='subset'", p)
    'pass --ignore-missing, or use --mode subset'
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from typing import Any, Iterator

from growstage.core.errors import did_you_mean

_CHOICE = re.compile(r"invalid choice: '([^']*)'")


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` without abbreviations, with did-you-mean for subcommands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:  # type: ignore[override]
        m = _CHOICE.search(message)
        if m:
            choices = [c for a in self._actions if a.choices for c in a.choices]
            message += did_you_mean(m.group(1), [str(c) for c in choices])
        super().error(message)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # a subcommand's unknown flag is that subcommand's error, printed with its own usage
        parsed, rest = super().parse_known_args(args, namespace)
        if rest and self._subparsers is None:
            flags = [s for a in self._actions for s in a.option_strings]
            self.error(f"unrecognized arguments: {' '.join(rest)}{did_you_mean(rest[0].split('=')[0], flags)}")
        return parsed, rest


def subparser(ap: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    """The subcommand parser called ``name`` (None when there is none)."""
    for action in ap._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


_KW = re.compile(r"\b([a-z][a-z0-9_]*)=(True\b|'[^']*'|\"[^\"]*\"|\[[^\]]*\]|)")


def cli_hint(text: str, parser: argparse.ArgumentParser | None) -> str:
    """``text`` with every ``keyword=value`` that names a flag of ``parser`` written as that flag."""
    if parser is None:
        return text
    flags = {s for a in parser._actions for s in a.option_strings}

    def one(m: re.Match) -> str:
        flag = "--" + m.group(1).replace("_", "-")
        if flag not in flags:
            return m.group(0)
        value = m.group(2)
        if value in ("True", ""):
            return flag
        if value.startswith("["):
            items = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            return " ".join(f"{flag} {v}" for v in items) or flag
        return f"{flag} {value[1:-1]}"

    text = _KW.sub(one, text)
    for words, flag, replacement in _RULE_FLAGS:
        if flag in flags:
            text = re.sub(words, replacement, text)
    # a quoted alternative right after a rewritten flag value: "--mode subset or 'ifpossible'"
    return re.sub(r"(--mode \w+)([^;']*) or '(\w+)'", r"\1\2 or --mode \3", text)


# the rules' own words for what the rule flags set: (pattern, flag, replacement)
_RULE_FLAGS = ((r"rule (?:scopes|exact) '([^']*)'", "--rename", r"--rename \1=..."),
               (r"rule regex '([^']*)'", "--regex", r"--regex \1=..."),
               (r"rule strip_prefix '([^']*)'", "--strip-prefix", r"--strip-prefix \1"),
               (r"rule add_prefix '([^']*)'", "--add-prefix", r"--add-prefix \1"),
               (r"ignore_params entry '([^']*)'", "--ignore", r"--ignore \1"),
               (r"ignore_params_prefixes entry '([^']*)'", "--ignore-prefix", r"--ignore-prefix \1"))


def _wants_logs() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") in ("0", "1")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file; what it caught is replayed if the block fails."""
    if _wants_logs():  # the user asked for the backend's log lines
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_keras() -> Any:
    """``import keras`` (and its backend) without the backend's start-up log lines."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import keras
        import keras.ops  # the backend's own start-up runs here (TensorFlow prints twice)

        keras.ops.zeros((1,))
    return keras


def check_keras_path(out: str, inputs: list[str] = ()) -> None:
    """The model file ``apply`` writes: a ``.keras`` name that a writer may replace (not one of ``inputs``)."""
    from growstage.core.errors import GrowstageError
    from growstage.io.outputs import check_output

    check_output(out, list(inputs))

    if not str(out).endswith(".keras"):
        raise GrowstageError(f"-o {out}: the model is written as a Keras file, whose name ends in .keras "
                             f"(-o {os.path.splitext(str(out))[0]}.keras)")


def save_model_atomically(model: Any, out: str) -> str:
    """``model.save`` to a temporary file beside ``out``, then renamed over it: never a half-written file."""
    check_keras_path(out)
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.", suffix=".tmp.keras", dir=folder)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return str(out)
