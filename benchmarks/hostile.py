"""Hostile files, measured: outside reads, crashes, hangs and escapes over generated cases (issue 16).

    python benchmarks/hostile.py                         # hand-built classes, 200 mutations, 50 bit flips
    python benchmarks/hostile.py --mutations 700 --flips 200 --seed 1
    python benchmarks/hostile.py --surfaces              # writers, CLI paths, FromCheckpoint configs,
                                                         # net dicts, safetensors (benchmarks/hostile_surfaces.py)
    python benchmarks/hostile.py --mutations 0 --flips 0 --splices 2000   # blocks spliced before attributes
    python benchmarks/hostile.py ... --without-heap-check  # the same with the global heap check off (the hangs)

Every case is opened and fully read (``open_checkpoint`` + ``read`` of every tensor, or
``latest_checkpoint`` for bit flips in checkpoint directories) by a worker process, so a
crash or a hang costs the worker, which is counted and restarted.  Per case the outcome is
``loaded``, ``refused`` (a GrowstageError), ``escape`` (any other exception), ``crash``
(the worker died from a signal) or ``hang`` (no answer within ``--timeout`` seconds); a
loaded value holding bytes of a secret file beside the cases counts as an outside read.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = b"SECRET-BYTES-OUTSIDE-THE-FILE!!!" * 2  # 64 bytes = 16 float32


def _bases(d: str) -> dict[str, str]:
    """One sound file per format."""
    import keras
    import tensorflow as tf

    import growstage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, name="out")], name="m")
    out = {"growstage": os.path.join(d, "g.h5"), "keras3": os.path.join(d, "k.weights.h5"),
           "keras": os.path.join(d, "k.keras"), "npz": os.path.join(d, "w.npz")}
    growstage.save(growstage.snapshot(model), out["growstage"])
    model.save_weights(out["keras3"])
    model.save(out["keras"])
    np.savez(out["npz"], **{"out/kernel": np.ones((3, 16), "f4")})
    os.makedirs(os.path.join(d, "tf"))
    tf.train.Checkpoint(w=tf.Variable(np.ones((3, 16), "f4"))).save(os.path.join(d, "tf", "ck"))
    out["tf"] = os.path.join(d, "tf")
    return out


def _h5_case(path: str, edit) -> str:
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("layers/out/vars")
        g.attrs["name"] = "out"
        g.create_dataset("0", data=np.ones((3, 16), "f4"))
        edit(g)
    return path


def _hand_built(d: str, secret: str) -> dict[str, str]:
    """The attack classes of issue 16, one file each."""
    import h5py

    other = os.path.join(d, "other.h5")
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.frombuffer(SECRET, "f4"))

    def vds(src):
        def edit(g):
            layout = h5py.VirtualLayout(shape=(16,), dtype="f4")
            layout[:] = h5py.VirtualSource(src, "/x" if src != "SELF" else "/layers/out/vars/1", shape=(16,))
            g.create_virtual_dataset("1", layout, fillvalue=7.0)
        return edit

    cases = {
        "external storage": lambda g: g.create_dataset("1", shape=(16,), dtype="f4", external=[(secret, 0, 64)]),
        "external link": lambda g: g.__setitem__("1", h5py.ExternalLink(other, "/x")),
        "dangling soft link": lambda g: g.__setitem__("1", h5py.SoftLink("/nowhere")),
        "vds other file": vds(other), "vds missing file": vds(os.path.join(d, "missing.h5")),
        "sparse 160 MB": lambda g: g.create_dataset("1", shape=(40_000_000,), dtype="f4", chunks=(1 << 16,)),
    }
    out = {name: _h5_case(os.path.join(d, f"case{i}.weights.h5"), edit) for i, (name, edit) in enumerate(cases.items())}
    out["vds self"] = _h5_case(os.path.join(d, "self.weights.h5"), lambda g: None)
    with h5py.File(out["vds self"], "r+") as f:
        layout = h5py.VirtualLayout(shape=(16,), dtype="f4")
        layout[:] = h5py.VirtualSource(out["vds self"], "/layers/out/vars/1", shape=(16,))
        f["layers/out/vars"].create_virtual_dataset("1", layout)
    fifo = os.path.join(d, "fifo.h5")
    os.mkfifo(fifo)
    out["fifo"] = fifo
    out["empty path"] = ""
    for name, text in (("state file absolute", f'model_checkpoint_path: "{d}/tf/ck-1"'),
                       ("state file ../", 'model_checkpoint_path: "../tf/ck-1"'), ("state file garbage", None)):
        sub = os.path.join(d, name.replace(" ", "_").replace("/", "up"))
        os.makedirs(sub)
        with open(os.path.join(sub, "checkpoint"), "wb") as fp:
            fp.write(text.encode() if text else b"\xff\xfe\x00\xc3garbage")
        out[name] = sub
    with zipfile.ZipFile(os.path.join(d, "ext.keras"), "w") as z:
        z.write(out["external storage"], "model.weights.h5")
        z.writestr("config.json", "{}")
    out["external storage in .keras"] = os.path.join(d, "ext.keras")
    return out


def _mutations(bases: dict[str, str], d: str, n: int, rnd: random.Random) -> dict[str, str]:
    """``n`` copies of the base files with random damage: bit flips, 512-byte splices, truncations."""
    out = {}
    files = {k: v for k, v in bases.items() if k != "tf"}
    files["tf index"] = bases["tf"] + "/ck-1.index"
    files["tf data"] = bases["tf"] + "/ck-1.data-00000-of-00001"
    for i in range(n):
        kind = rnd.choice(sorted(files))
        src = files[kind]
        data = bytearray(open(src, "rb").read())
        how = rnd.choice(["flip", "flip", "splice", "truncate"])
        if how == "flip":
            for _ in range(rnd.randint(1, 4)):
                data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif how == "splice":
            at = rnd.randrange(len(data))
            data[at:at + 512] = bytes(rnd.randrange(256) for _ in range(512))
        else:
            data = data[: rnd.randrange(len(data))]
        if kind.startswith("tf"):
            dst = os.path.join(d, f"m{i}")
            shutil.copytree(bases["tf"], dst)
            open(os.path.join(dst, os.path.basename(src)), "wb").write(bytes(data))
        else:
            dst = os.path.join(d, f"m{i}-" + os.path.basename(src))
            open(dst, "wb").write(bytes(data))
        out[f"mutation {i} ({kind}, {how})"] = dst
    return out


_ATTRS = (b"name", b"format", b"meta", b"crc32", b"split", b"roles", b"weight_names", b"layer_names",
          b"keras_version", b"backend", b"model_config", b"training_config")


def _splices(bases: dict[str, str], d: str, n: int, rnd: random.Random) -> dict[str, str]:
    """``n`` HDF5 files with a 512- to 2048-byte block (zeros, random bytes, an HDF5 signature block, a copy
    of other bytes of the file) inserted or written just before one of their attributes (issue 26)."""
    if not n:
        return {}
    import keras

    legacy = os.path.join(d, "k2.h5")  # Keras 2's .h5 layout (Keras 3 still writes it for a .h5 name)
    keras.saving.load_model(bases["keras"]).save(legacy)
    files = {"growstage": bases["growstage"], "keras3": bases["keras3"], "keras": bases["keras"], "keras2": legacy}
    out = {}
    for i in range(n):
        kind = rnd.choice(sorted(files))
        src = files[kind]
        data = (zipfile.ZipFile(src).read("model.weights.h5") if kind == "keras" else open(src, "rb").read())
        spots = sorted({j for a in _ATTRS for j in _find_all(data, a)})
        at = max(0, rnd.choice(spots) - rnd.choice([0, 2, 4, 8, 16, 24, 32, 48]))
        size, fill, how = rnd.choice([512, 512, 1024, 2048]), rnd.choice(["zeros", "random", "sig", "copy"]), \
            rnd.choice(["insert", "insert", "overwrite"])
        sig = data.find(b"\x89HDF")
        block = {"zeros": bytes(size), "random": bytes(rnd.randrange(256) for _ in range(size)),
                 "sig": data[sig:sig + size], "copy": data[(c := rnd.randrange(len(data) - size)):c + size]}[fill]
        data = data[:at] + block.ljust(size, b"\0") + data[at + (size if how == "overwrite" else 0):]
        dst = os.path.join(d, f"s{i}-" + os.path.basename(src))
        if kind == "keras":
            with zipfile.ZipFile(dst, "w") as z:
                z.writestr("model.weights.h5", data)
                z.writestr("config.json", zipfile.ZipFile(src).read("config.json"))
        else:
            open(dst, "wb").write(data)
        out[f"splice {i} ({kind}, {how} {size} {fill} at {at})"] = dst
    return out


def _find_all(data: bytes, what: bytes) -> list[int]:
    found, at = [], data.find(what)
    while at >= 0:
        found.append(at)
        at = data.find(what, at + 1)
    return found


def _flips(d: str, n: int, rnd: random.Random) -> dict[str, str]:
    """``n`` checkpoint directories whose newest file has one flipped bit."""
    import growstage
    from growstage.io.checkpoint_dir import checkpoint_path, save_checkpoint

    ref = os.path.join(d, "ref")
    for e in range(2):
        snap = growstage.Snapshot({"lstm0": {"kernel": growstage.Param(np.full((5, 12), e, "f4"), split=[[5], [3] * 4])},
                                   "@optimizer/lstm0": {"kernel#m": growstage.Param(np.zeros((5, 12), "f4"))}},
                                  meta={"epoch": e})
        save_checkpoint(ref, snap, epoch=e, keep=5)
    out = {}
    for i in range(n):
        dst = os.path.join(d, f"flip{i}")
        shutil.copytree(ref, dst)
        victim = str(checkpoint_path(dst, 1))
        data = bytearray(open(victim, "rb").read())
        pos = rnd.randrange(len(data))
        data[pos] ^= 1 << rnd.randrange(8)
        open(victim, "wb").write(bytes(data))
        # bytes 28..511 are the user block's padding, read by nothing: a flip there leaves the file intact
        out[f"flip {i}{' (padding)' if 28 <= pos < 512 else ''}"] = "latest:" + dst
    return out


def _hf_cases(d: str, secret: str) -> dict[str, tuple[str, str]]:
    """Hostile Hugging Face folders (issue 25): ``{name: (folder, expected outcome)}``."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import hf_hostile_cases

    return hf_hostile_cases.cases(d, secret)


def worker() -> None:
    """Answer one JSON line per case path read from stdin."""
    import warnings

    import growstage
    from growstage.core.errors import GrowstageError
    from growstage.io.checkpoint_dir import latest_checkpoint

    warnings.simplefilter("ignore")
    if "--without-heap-check" in sys.argv:  # to measure what the check catches
        import growstage.io.hdf5_guard as guard

        guard.refuse_bad_heaps = lambda *a, **k: None
    for line in sys.stdin:
        path = json.loads(line)
        arrays = []
        try:
            if path.startswith("latest:"):
                found = latest_checkpoint(path[len("latest:"):])
                outcome = "loaded" if found and found[1].meta["epoch"] == 1 else "skipped"
                if found:
                    found[1].close()
            else:
                with growstage.open_checkpoint(path) as r:
                    arrays = [r.read(n) for n in r] + [r.optimizer[n].read() for n in r.optimizer]
                outcome = "loaded"
        except GrowstageError:
            outcome = "refused"
        except Exception as e:  # what the measurement counts as an escape
            outcome = f"escape {type(e).__name__}"
        outside = any(SECRET[:8] in np.ascontiguousarray(a).tobytes() for a in arrays)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MB: the worker's peak so far
        print(json.dumps({"outcome": outcome, "outside": outside, "rss": rss}), flush=True)


def _start() -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    flags = ["--without-heap-check"] if "--without-heap-check" in sys.argv else []
    return subprocess.Popen([sys.executable, __file__, "--worker"] + flags, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def _ask(proc: subprocess.Popen, path: str, timeout: float) -> tuple[subprocess.Popen, dict]:
    """The worker's answer for ``path``; a dead or silent worker is replaced."""
    proc.stdin.write(json.dumps(path) + "\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line:
        return proc, json.loads(line)
    if ready:  # end of file: the worker died
        proc.wait()
        result = {"outcome": f"crash (signal {-proc.returncode})" if proc.returncode < 0 else "crash", "outside": False}
    else:
        proc.kill()
        proc.wait()
        result = {"outcome": "hang", "outside": False}
    return _start(), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutations", type=int, default=200)
    ap.add_argument("--flips", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--splices", type=int, default=0, help="HDF5 files with a block spliced before an attribute")
    ap.add_argument("--without-heap-check", action="store_true", help="the worker skips the global heap check")
    ap.add_argument("--surfaces", action="store_true", help="the surfaces around the readers (issue 26) only")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    if args.worker:
        worker()
        return 0
    if args.surfaces:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import hostile_surfaces

        d = tempfile.mkdtemp(prefix="growstage-surfaces-")
        bad = hostile_surfaces.run(d, args.seed)
        for line in bad:
            print("  ", line)
        shutil.rmtree(d, ignore_errors=True)
        return 1 if bad else 0
    rnd = random.Random(args.seed)
    d = tempfile.mkdtemp(prefix="growstage-hostile-")
    secret = os.path.join(d, "secret.bin")
    open(secret, "wb").write(SECRET)
    bases = _bases(d)
    hf = _hf_cases(d, secret)
    cases = {**_hand_built(d, secret), **{n: f for n, (f, _) in hf.items()}, **_mutations(bases, d, args.mutations, rnd),
             **_flips(d, args.flips, rnd), **_splices(bases, d, args.splices, rnd)}
    proc, counts, bad, peak = _start(), {}, [], 0
    t0 = time.perf_counter()
    for name, path in cases.items():
        proc, res = _ask(proc, path, args.timeout)
        key = res["outcome"].split(" (")[0].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
        counts["outside read"] = counts.get("outside read", 0) + res["outside"]
        peak = max(peak, res.get("rss", 0))
        if key in ("escape", "crash", "hang") or res["outside"] or (name in hf and key != hf[name][1]) \
                or (name.startswith("flip") and key == "loaded" and "padding" not in name):
            bad.append(f"{name}: {res['outcome']}{' (outside read)' if res['outside'] else ''}")
        if not name.startswith(("mutation", "flip", "splice")):
            print(f"{name:32s} {res['outcome']}")
    proc.stdin.close()
    proc.wait()
    print(f"{len(cases)} cases in {time.perf_counter() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f"; worker peak RSS {peak} MB")
    for line in bad:
        print("  ", line)
    shutil.rmtree(d, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
