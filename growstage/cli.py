"""The ``growstage`` command line.

    growstage demo [--out DIR]          the layer-wise growing demo
    growstage inspect PATH [--json]     names, shapes, dtypes and sizes of a snapshot
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import GrowstageError


def _inspect(args: argparse.Namespace) -> int:
    from .store import load

    with load(args.path) as snap:
        rows = [{"name": f"{l}/{p}", "shape": list(prm.shape), "dtype": str(prm.dtype), "bytes": prm.nbytes,
                 "split": prm.split} for l, ps in snap.items() for p, prm in ps.items()]
        meta = {k: v for k, v in snap.meta.items() if not k.startswith("_")}
    if args.json:
        print(json.dumps({"meta": meta, "params": rows}, indent=1))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        print(f"{r['name']:<{width}}  {str(tuple(r['shape'])):<16} {r['dtype']:<8} {r['bytes']:>12,d}")
    print(f"{len(rows)} params, {sum(r['bytes'] for r in rows):,d} bytes; meta {json.dumps(meta, sort_keys=True)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="growstage", description="carry trained parameters across architecture changes")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="run the layer-wise growing demo", add_help=False)
    p = sub.add_parser("inspect", help="list the params of a growstage snapshot")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    args, rest = ap.parse_known_args(argv)
    try:
        if args.cmd == "demo":
            from .demo import main as demo_main

            return demo_main(rest)
        if rest:
            ap.error(f"unrecognized arguments: {' '.join(rest)}")
        return _inspect(args)
    except GrowstageError as e:
        print(f"growstage: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
