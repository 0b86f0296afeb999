"""The ``growstage`` command line.

    growstage demo [--out DIR]                      the layer-wise growing demo
    growstage inspect PATH [--stats] [--json]       names, shapes, dtypes, sizes (any readable format)
    growstage plan SRC --into MODULE:FUNCTION       dry-run table of a transfer into the model FUNCTION() builds
    growstage apply SRC --into MODULE:FUNCTION -o OUT.keras   the same transfer carried out, the model written
    growstage average CKPT... -o OUT.h5             float tensors averaged, integer ones from the last
    growstage diff A B [--json]                     what differs; exit 1 when anything does
    growstage convert SRC OUT.h5 [rules]            any readable format to growstage HDF5
    growstage export SRC OUT.safetensors --to torch a PyTorch state_dict of SRC (a file growstage reads)
    growstage export MODEL.keras OUT_DIR --to hf [--preset hf-gpt2] [--max-shard-size 2GB]
                                                    a Hugging Face folder of a saved keras_hub model

Rules (plan, apply, convert): --strip-prefix P, --add-prefix P, --rename OLD=NEW (a scope
when OLD ends in '/'), --regex PATTERN=REPLACEMENT, --ignore NAME, --ignore-prefix P.
Exit codes: 0 done, 1 diff found differences, 2 bad input (the message says what
and how to fix it), 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from typing import Any

from growstage.cli_export import add_export_parser, export_command
from growstage.cli_support import Parser, cli_hint, quiet_keras, subparser
from growstage.core.errors import GrowstageError, PlanError


def _load_builder(spec: str) -> Any:
    """``package.module:function`` or ``path/file.py:function``, called with no arguments."""
    quiet_keras()  # the builder imports Keras: without the backend's start-up log lines
    mod_name, sep, func_name = spec.rpartition(":")
    if not sep or not mod_name or not func_name:
        raise GrowstageError(f"--into {spec!r}: expected MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        if mod_name.endswith(".py") or os.sep in mod_name:
            loader_spec = importlib.util.spec_from_file_location("growstage_user_builder", mod_name)
            if loader_spec is None or not os.path.exists(mod_name):
                raise GrowstageError(f"--into {spec!r}: no such file {mod_name!r}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())
            module = importlib.import_module(mod_name)
    except ImportError as e:
        raise GrowstageError(f"--into {spec!r}: cannot import {mod_name!r} ({e})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise GrowstageError(f"--into {spec!r}: {mod_name} has no function {func_name!r}")
    return func()


def _rules(args: argparse.Namespace) -> dict[str, Any] | None:
    rules: dict[str, Any] = {}
    for item in args.rename or []:
        old, sep, new = item.partition("=")
        if not sep:
            raise GrowstageError(f"--rename {item!r}: expected OLD=NEW (a scope: OLD/=NEW/)")
        if old.endswith("/") != new.endswith("/"):
            raise GrowstageError(f"--rename {item!r}: a scope ends with '/' on both sides "
                                 f"(--rename {old.rstrip('/')}/={new.rstrip('/')}/), a single name on neither")
        rules.setdefault("scopes" if old.endswith("/") or old == "" else "exact", {})[old] = new
    for item in args.regex or []:
        pat, sep, repl = item.partition("=")
        if not sep:
            raise GrowstageError(f"--regex {item!r}: expected PATTERN=REPLACEMENT")
        rules.setdefault("regex", []).append((pat, repl))
    for key in ("strip_prefix", "add_prefix"):
        if getattr(args, key):
            rules[key] = getattr(args, key)
    if args.ignore:
        rules["ignore_params"] = args.ignore
    if args.ignore_prefix:
        rules["ignore_params_prefixes"] = args.ignore_prefix
    return rules or None


def _fill_arg(text: str) -> Any:
    """``--fill``: a fill name, or a number (the library takes both)."""
    try:
        return float(text)
    except ValueError:
        return text


def _rich_inspect(info: dict[str, Any]) -> None:
    """The tensors as a rich table (a terminal); pipes get the plain lines."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # names and paths come from files growstage did not write: never read them as markup
    rows = info["params"]
    stats = any("mean" in r for r in rows)
    table = Table(title=escape(f"{info['format']} {_what(info['path'])} {info['path']}"),
                  caption=f"{len(rows)} tensors, {sum(r['bytes'] for r in rows):,d} bytes")
    for col, just in (("name", "left"), ("shape", "left"), ("dtype", "left"), ("bytes", "right")):
        table.add_column(col, justify=just)
    for col in ("mean", "std", "min", "max", "non-finite") if stats else ():
        table.add_column(col, justify="right")
    for r in rows:
        cells = [escape(r["name"]), str(tuple(r["shape"])), escape(r["dtype"]), f"{r['bytes']:,d}"]
        if stats:
            cells += [f"{r[k]:+.4g}" for k in ("mean", "std", "min", "max")]
            cells.append(f"[red]{r['nonfinite']}[/red]" if r.get("nonfinite") else "0")
        table.add_row(*cells)
    console = Console()
    console.print(table)
    for note in info["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)
    if info["meta"]:
        console.print(_meta_line(info["meta"]), markup=False, highlight=False)


def _what(path: str) -> str:
    return "folder" if os.path.isdir(path) else "file"  # a sharded snapshot is a folder, not a file


def _print_inspect(info: dict[str, Any], as_json: bool) -> None:
    if as_json:  # one tensor per line: shapes and statistics stay readable
        rows = ",\n  ".join(json.dumps(r, default=str) for r in info["params"])
        rest = {k: v for k, v in info.items() if k != "params"}
        print(json.dumps(rest, default=str)[:-1] + ', "params": [\n  ' + rows + "\n]}")
        return
    rows = info["params"]
    if sys.stdout.isatty():
        _rich_inspect(info)
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        line = f"{r['name']:<{width}}  {str(tuple(r['shape'])):<16} {r['dtype']:<8} {r['bytes']:>12,d}"
        if "mean" in r:
            line += f"  mean {r['mean']:+.4g} std {r['std']:.4g} min {r['min']:+.4g} max {r['max']:+.4g}"
            if r.get("nonfinite"):
                line += f"  NONFINITE {r['nonfinite']}"
        print(line)
    print(f"{len(rows)} tensors, {sum(r['bytes'] for r in rows):,d} bytes; {info['format']} {_what(info['path'])} "
          f"{info['path']}")
    for note in info["notes"]:
        print(f"note: {note}")
    if info["meta"]:
        print(_meta_line(info["meta"]))


def _meta_line(meta: dict[str, Any], longest: int = 120) -> str:
    """The metadata as one line; a long value (a fit checkpoint's RNG state) is summarised, --json has it."""
    parts = []
    for key, value in sorted(meta.items()):
        text = json.dumps(value, sort_keys=True, default=str)
        if len(text) > longest:
            text = f"<{len(text):,d} characters, see --json>"
        parts.append(f"{json.dumps(key)}: {text}")
    return "meta {" + ", ".join(parts) + "}"


def _run(args: argparse.Namespace) -> int:
    from growstage import filetools as fileops

    if args.cmd == "inspect":
        _print_inspect(fileops.inspect(args.path, stats=args.stats, allow_large=args.allow_large), args.json)
        return 0
    if args.cmd in ("plan", "apply"):
        return _plan_or_apply(args)
    if args.cmd == "average":
        out = fileops.average(args.ckpts, args.output, allow_large=args.allow_large)
        print(f"wrote {out} (average of {len(args.ckpts)})")
        return 0
    if args.cmd == "diff":
        d = fileops.diff(args.a, args.b, allow_large=args.allow_large)
        if args.json:
            print(json.dumps(d, indent=1))
        else:
            for n in d["only_a"]:
                print(f"- {n}  (only in {args.a})")
            for n in d["only_b"]:
                print(f"+ {n}  (only in {args.b})")
            for r in d["reshaped"]:
                print(f"! {r['name']}  {tuple(r['a'][0])} {r['a'][1]} -> {tuple(r['b'][0])} {r['b'][1]}")
            for r in d["changed"]:
                print(f"~ {r['name']}  {r['n_changed']} values differ, max |a-b| {r['max_abs_diff']:.6g}")
            if not any(d.values()):
                print("identical")
        return 1 if any(d.values()) else 0
    if args.cmd == "convert":
        out = fileops.convert(args.src, args.output, rules=_rules(args), allow_large=args.allow_large)
        print(f"wrote {out}")
        return 0
    if args.cmd == "export":
        return export_command(args)
    raise AssertionError(args.cmd)


def _transfer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of plan/transfer from the flags plan and apply share."""
    opts: dict[str, Any] = {"mode": args.mode, "fill": _fill_arg(args.fill), "rules": _rules(args)}
    if args.only:
        opts["only"] = args.only
    for flag in ("ignore_missing", "ignore_unused", "allow_new_layers", "allow_cast", "allow_auto_names",
                 "allow_large", "strict_preserve"):
        if getattr(args, flag):
            opts[flag] = True
    return opts


def _plan_or_apply(args: argparse.Namespace) -> int:
    """``plan``: the dry-run table; ``apply``: the same plan carried out and the model written."""
    if args.cmd == "apply":
        from growstage.cli_support import check_keras_path

        check_keras_path(args.output, [args.src])  # before anything is built
    model = _load_builder(args.into)  # first: Keras is imported quietly there
    from growstage.engine.planning import plan

    p = plan(args.src, model, **_transfer_options(args))
    rows, notes = p.rows, p.notes
    if args.cmd == "apply":
        from growstage.cli_support import save_model_atomically
        from growstage.engine.writing import apply

        report = apply(p)
        rows, notes = report.rows, report.notes
        out = save_model_atomically(model, args.output)
    if args.json:
        print(p.to_json() if args.cmd == "plan" else report.to_json())
    elif sys.stdout.isatty():
        from rich.console import Console

        from growstage.engine.report import render_table

        render_table(rows, notes=notes, console=Console())
    else:
        print(p.table() if args.cmd == "plan" else report.table())
    if args.cmd == "apply":  # with --json, stdout is JSON only
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


_SRC_HELP = ("a checkpoint in any format growstage reads: growstage .h5 or sharded snapshot folder, Keras "
             ".weights.h5/.keras/.h5, .npz, a TensorFlow checkpoint (directory or prefix), or a fit "
             "checkpoint directory (its latest verified epoch-NNNN.h5 or epoch-NNNN/)")


def _add_rule_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rules: rename checkpoint names (each must match something)")
    g.add_argument("--strip-prefix", dest="strip_prefix", metavar="P", help="remove P from the start of every name")
    g.add_argument("--add-prefix", dest="add_prefix", metavar="P", help="put P in front of every name")
    g.add_argument("--rename", action="append", metavar="OLD=NEW",
                   help="rename one name; a scope when both end in '/' (--rename enc/=encoder/); repeatable")
    g.add_argument("--regex", action="append", metavar="PATTERN=REPL",
                   help="rename by regular expression, back-references allowed (lstm(\\d)/=blstm\\1/); repeatable")
    g.add_argument("--ignore", action="append", metavar="NAME", help="leave out this checkpoint name; repeatable")
    g.add_argument("--ignore-prefix", dest="ignore_prefix", action="append", metavar="PREFIX",
                   help="leave out every name starting with PREFIX; repeatable")


_RELAX = {"ignore-missing": "target params without a source keep their init (reported)",
          "ignore-unused": "source params without a home are allowed (reported)",
          "allow-new-layers": "target layers absent from the source keep their init (reported)",
          "allow-cast": "allow a dtype change (e.g. float16 -> float32)",
          "allow-auto-names": "accept Keras-generated layer names (dense_3), stable only if built identically",
          "allow-large": "read HDF5 datasets declaring over 10x their file's size (compressed or sparse: a memory "
                         "risk, refused by default)"}


def _add_plan_parser(sub: Any, cmd: str = "plan") -> None:
    if cmd == "plan":
        p = sub.add_parser("plan", help="dry-run table of a transfer", description="dry-run table of a transfer: "
                           "what each target param would get, nothing is written")
    else:
        p = sub.add_parser("apply", help="carry out a transfer and write the model",
                           description="build the target, carry out the transfer plan would show (same options, "
                           "same report) and write the model as a .keras file (atomically)")
    p.add_argument("src", metavar="SRC", help=_SRC_HELP)
    p.add_argument("--into", required=True, metavar="MODULE:FUNCTION",
                   help="the target model: FUNCTION() from MODULE (importable from the current directory) "
                        "or from FILE.py (FILE.py:FUNCTION); runs that code")
    p.add_argument("--mode", default="exact", choices=("exact", "ifpossible", "subset", "reset"),
                   help="how a value meets a target of another shape: exact (default, as in the library: error), "
                        "ifpossible (copy equal shapes, keep the init otherwise), subset (block-wise slice/pad), "
                        "reset (keep the init)")
    p.add_argument("--fill", default="init", metavar="FILL",
                   help="what padded entries hold: init (default: the target's init), init-blocks (only new "
                        "entries drawn, same distribution), zeros, a number, or the function-preserving "
                        "preserve, net2net, double, clone, lemon")
    p.add_argument("--only", action="append", metavar="LAYER",
                   help="load only this target layer (repeatable); the others keep their values")
    if cmd == "apply":
        p.add_argument("-o", "--output", required=True, metavar="OUT.keras",
                       help="the Keras model file to write (.keras; written atomically)")
    p.add_argument("--strict-preserve", dest="strict_preserve", action="store_true",
                   help="a preserving fill (preserve, net2net, ...) that cannot keep the function of a param or "
                        "layer is an error naming it (default: a note in the report)")
    g = p.add_argument_group("relaxations (strict by default)")
    for flag, text in _RELAX.items():
        g.add_argument(f"--{flag}", dest=flag.replace("-", "_"), action="store_true", help=text)
    p.add_argument("--json", action="store_true", help=f"print the {'plan' if cmd == 'plan' else 'report'} as "
                   "JSON instead of a table (only JSON on stdout)")
    _add_rule_flags(p)


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="growstage", description="carry trained parameters across architecture changes",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                            help="what to do (growstage COMMAND --help documents its options)")
    sub.add_parser("demo", help="run the layer-wise growing demo (growstage demo --help for its options)",
                   add_help=False)
    p = sub.add_parser("inspect", help="list the tensors of a checkpoint", description="list the tensors of a checkpoint")
    p.add_argument("path", metavar="PATH", help=_SRC_HELP)
    p.add_argument("--stats", action="store_true", help="mean, std, min, max, non-finite count (reads every tensor)")
    p.add_argument("--allow-large", dest="allow_large", action="store_true", help=_RELAX["allow-large"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_plan_parser(sub)
    _add_plan_parser(sub, "apply")
    p = sub.add_parser("average", help="average checkpoints of one architecture",
                       description="average float tensors of checkpoints of one architecture; integer tensors "
                                   "come from the last")
    p.add_argument("ckpts", nargs="+", metavar="CKPT", help="checkpoints to average (" + _SRC_HELP + ")")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="the growstage HDF5 file to write")
    p.add_argument("--allow-large", dest="allow_large", action="store_true", help=_RELAX["allow-large"])
    p = sub.add_parser("diff", help="compare two checkpoints",
                       description="what differs between two checkpoints; exit 1 when anything does")
    p.add_argument("a", metavar="A", help="the first checkpoint (" + _SRC_HELP + ")")
    p.add_argument("b", metavar="B", help="the second checkpoint, same formats")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.add_argument("--allow-large", dest="allow_large", action="store_true", help=_RELAX["allow-large"])
    p = sub.add_parser("convert", help="any readable checkpoint to growstage HDF5",
                       description="any readable checkpoint to growstage HDF5, names renamed by the rules")
    p.add_argument("src", metavar="SRC", help=_SRC_HELP)
    p.add_argument("output", metavar="OUT.h5", help="the growstage HDF5 file to write")
    p.add_argument("--allow-large", dest="allow_large", action="store_true", help=_RELAX["allow-large"])
    _add_rule_flags(p)
    add_export_parser(sub, _SRC_HELP, _RELAX["allow-large"])
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser()
    try:
        if argv[:1] == ["demo"]:  # the demo parses its own flags
            quiet_keras()
            from growstage.demo import main as demo_main

            return demo_main(argv[1:])
        args = ap.parse_args(argv)
        return _run(args)
    except GrowstageError as e:
        # a file's problem is one line (HDF5's own messages span several); a plan's problems stay a list
        text = str(e) if isinstance(e, PlanError) else " ".join(str(e).split())
        text = cli_hint(text, subparser(ap, argv[0]) if argv else None)  # hints as the flags to type
        print(f"growstage: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("growstage: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `growstage inspect ... | head`: the reader left, which is no error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush stays quiet
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
