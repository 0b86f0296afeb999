"""``growstage export``: a checkpoint as a PyTorch state_dict (safetensors) or a saved keras_hub model as a
Hugging Face folder.  Kept apart from :mod:`growstage.cli` so that each command module stays small; like
every file-only command, exporting a file imports no deep-learning framework until it must.

Example::

    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_export_parser(sub, "a checkpoint", "accept large tensors")
    >>> sorted(sub.choices)
    ['export']
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from growstage.core.errors import GrowstageError


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GrowstageError(f"{flag} {item!r}: expected LAYER=VALUE")
        out[key] = value
    return out


def _export_hf(args: argparse.Namespace) -> int:
    import keras

    import keras_hub  # noqa: F401  (registers keras_hub's classes for load_model)

    from growstage.interop.hf.export import export_hf

    if not os.path.isfile(args.src) or not args.src.endswith(".keras"):
        raise GrowstageError(f"{args.src}: --to hf exports a saved keras_hub model (MODEL.keras)")
    model = keras.saving.load_model(args.src)  # safe_mode: no lambda deserialisation
    out = export_hf(model, args.output, preset=args.preset, max_shard_size=args.max_shard_size or "2GB")
    print(json.dumps(out, indent=1) if args.json else
          f"wrote {args.output}: {len(out['files'])} files, {out['tensors']} tensors, {out['bytes']:,d} bytes")
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``growstage export``: a PyTorch state_dict file (``--to torch``) or a Hugging Face folder (``--to hf``)."""
    from growstage.export import save_safetensors

    if args.to == "hf":
        return _export_hf(args)
    if args.preset is not None or args.max_shard_size is not None:
        raise GrowstageError("--preset and --max-shard-size apply to --to hf only")
    # a path is only ever read, never imported: only plan --into loads code (a missing file is "no such file")
    src = args.src
    report = save_safetensors(src, args.output, naming=_pairs(args.naming, "--naming"),
                              types=_pairs(args.types, "--type"), unknown=args.unknown,
                              allow_auto_names=args.allow_auto_names, allow_large=args.allow_large)
    print(report.to_json() if args.json else report.table())
    # with --json, stdout is JSON only
    print(f"wrote {args.output} ({report.bytes_written:,d} bytes)", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_export_parser(sub: Any, src_help: str, allow_large_help: str) -> None:
    """The ``export`` subcommand's parser (``src_help``, ``allow_large_help``: the texts every command shares)."""
    p = sub.add_parser("export", help="export to a PyTorch state_dict or a Hugging Face folder (safetensors)",
                       description="Write the torch.nn state_dict equivalent to SRC's Keras layers as a safetensors "
                       "file and print one row per tensor (what was transposed or reordered).")
    p.add_argument("src", metavar="SRC", help=src_help + "; read only, never imported (a model built in code: "
                   "growstage.export.save_safetensors(model, path) in Python)")
    p.add_argument("output", help="the .safetensors file to write (atomically)")
    p.add_argument("--to", required=True, choices=["torch", "hf"],
                   help="torch: one state_dict file; hf: a Hugging Face folder (config.json, safetensors shards, "
                   "index) of a saved keras_hub model")
    p.add_argument("--preset", choices=["hf-gpt2", "hf-llama", "hf-gemma", "hf-bert"],
                   help="--to hf: the HF layout (default: from the keras_hub backbone class)")
    p.add_argument("--max-shard-size", dest="max_shard_size", metavar="SIZE",
                   help="--to hf: largest shard, bytes or e.g. 2GB, 500MB (default 2GB)")
    p.add_argument("--naming", action="append", metavar="LAYER=MODULE.PATH",
                   help="torch module path of a Keras layer (default: the layer name); repeatable")
    p.add_argument("--type", dest="types", action="append", metavar="LAYER=KERAS_TYPE",
                   help="the Keras type of a layer where the file does not say (else inferred from param names)")
    p.add_argument("--unknown", choices=["error", "raw"], default="error",
                   help="layers of types without a torch conversion: error (default) or pass through raw")
    p.add_argument("--allow-auto-names", dest="allow_auto_names", action="store_true",
                   help="accept Keras auto-generated layer names (model sources)")
    p.add_argument("--allow-large", dest="allow_large", action="store_true", help=allow_large_help)
    p.add_argument("--json", action="store_true", help="the report as JSON (only JSON on stdout)")
