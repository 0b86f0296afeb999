"""Peak memory of growing on load from a sharded Hugging Face folder (issue 25, item 6).

    python benchmarks/hf_memory.py                 # GPT-2 124M (12 layers) -> 16 layers (153M), 100MB shards
    python benchmarks/hf_memory.py --layers 4 --grow 6 --hidden 256 --shard 10MB   # quick

A child process saves a random GPT-2 of ``--layers`` layers (transformers, torch seed 0) in shards of
``--shard``.  Then, per case, a fresh process imports everything, notes its resident memory (VmRSS),
resets the kernel's high-water mark (``/proc/self/clear_refs``), builds the bigger keras_hub GPT2CausalLM
and loads the folder; the peak (VmHWM) minus the resident memory before is what building and loading
cost on top of the imports.  The claim: at most the target's param bytes + the largest shard + 10%.
Cases, interleaved: ``rebuild`` (the model built without the initializers the load overwrites, the
folder read lazily shard by shard), ``transfer`` (into a model built first: all or nothing, so the
values it overwrites are kept until it succeeds: the target's bytes once more) and ``whole folder``
(every shard read with ``safetensors.numpy.load_file`` first, then ``rebuild``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def save(folder: str, layers: int, hidden: int, shard: str) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=layers, n_embd=hidden, n_head=hidden // 64, n_positions=1024,
                                  vocab_size=50257, bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder, max_shard_size=shard)


def measure(folder: str, case: str, grow: int) -> dict:
    import keras
    import keras_hub
    import numpy as np

    import growstage

    cfg = json.load(open(os.path.join(folder, "config.json")))

    def build():
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=cfg["vocab_size"], num_layers=grow,
                                                 num_heads=cfg["n_head"], hidden_dim=cfg["n_embd"],
                                                 intermediate_dim=4 * cfg["n_embd"],
                                                 max_sequence_length=cfg["n_positions"])
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)

    opts = dict(mode="subset", fill="preserve", allow_new_layers=True)
    open("/proc/self/clear_refs", "w").write("5")  # the high-water mark restarts at the current RSS
    base = _status("VmRSS")
    if case == "transfer":  # into a model built first: the undo copy of every value it overwrites is kept
        model = build()
        growstage.transfer(folder, model, **opts)
    elif case == "rebuild":  # built without running the initializers the load overwrites: nothing to undo
        model, _ = growstage.rebuild(build, folder, **opts)
    else:  # "whole folder": every shard read at once first, as a loader of the whole folder would
        from safetensors.numpy import load_file

        held = [load_file(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.endswith(".safetensors")]
        model, _ = growstage.rebuild(build, folder, **opts)
        assert held
    params = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
    shards = [os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".safetensors")]
    return {"case": case, "backend": keras.backend.backend(), "target_param_bytes": params,
            "largest_shard": max(shards), "folder_bytes": sum(shards), "n_shards": len(shards),
            "peak_over_base": _status("VmHWM") - base}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--grow", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--shard", default="100MB")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], int(args.child[2]))))
        return 0
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as d:
        folder = os.path.join(d, "hf")
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); "
                        f"from benchmarks.hf_memory import save; save({folder!r}, {args.layers}, {args.hidden}, "
                        f"{args.shard!r})"], check=True, env=env)
        rows = []
        for _ in range(args.rounds):  # interleaved
            for case in ("rebuild", "transfer", "whole folder"):
                out = subprocess.run([sys.executable, __file__, "--child", folder, case, str(args.grow)],
                                     capture_output=True, text=True, env=env, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mb = 1 << 20
    for r in rows:
        bound = (r["target_param_bytes"] + r["largest_shard"]) * 1.1
        print(f"{r['case']:12s} {r['backend']:10s} target {r['target_param_bytes'] / mb:5.0f} MB, largest shard "
              f"{r['largest_shard'] / mb:4.0f} MB of {r['n_shards']} ({r['folder_bytes'] / mb:.0f} MB): peak over "
              f"base {r['peak_over_base'] / mb:5.0f} MB = {r['peak_over_base'] / bound:.2f} x (target + largest "
              "shard + 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
