"""The surfaces around the readers, measured (issue 26): writers, command-line paths,
FromCheckpoint configs in model files, RETURNN net dicts, safetensors files for ``from_torch``.

    python benchmarks/hostile.py --surfaces            # these cases only (run in-process: none can hang)

Per case the outcome is ``refused`` (a GrowstageError), ``done`` (written, built or loaded) or
``escape`` (any other exception); and per surface the harm it must never do: a special OUT
replaced or an input changed (writers), a module imported (command line), a file outside the
model's folder opened (FromCheckpoint), a value that is not NaN/Inf-counted (safetensors).
"""
from __future__ import annotations

import json
import os
import random
import socket
import zipfile

import numpy as np

POOL = [10 ** 9, 1e9, 2.9, 0, -1, True, "no", "", None, [], {}, [1], ["x"], float("nan"), float("inf"), "x" * 500,
        {"class": "copy"}, -0.5, 1.0, 3]


def _outcome(fn) -> str:
    from growstage.core.errors import GrowstageError

    try:
        fn()
        return "done"
    except GrowstageError:
        return "refused"
    except Exception as e:  # what the measurement counts as an escape
        return f"escape {type(e).__name__}: {str(e)[:120]}"


def _special(d: str, kind: str, i: int) -> str:
    p = os.path.join(d, f"special-{kind}-{i}")
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        os.mkdir(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(p)
        s.close()
    else:
        os.symlink(os.devnull, p)
    return p


def writers(d: str) -> tuple[dict, list]:
    import growstage
    from growstage.cli import main as cli
    from growstage.export import save_safetensors
    from growstage.filetools import average, convert

    src = str(growstage.save({"out": {"kernel": np.ones((3, 2), "f4")}}, os.path.join(d, "src.h5")))
    data = open(src, "rb").read()
    ws = {"save": lambda o: growstage.save({"w": {"v": np.ones(2)}}, o), "average": lambda o: average([src], o),
          "convert": lambda o: convert(src, o), "export": lambda o: save_safetensors(src, o, types={"out": "Dense"}),
          "cli average": lambda o: _cli(cli, ["average", src, "-o", o]),
          "cli convert": lambda o: _cli(cli, ["convert", src, o]),
          "cli export": lambda o: _cli(cli, ["export", src, o, "--to", "torch", "--type", "out=Dense"])}
    counts, bad, i = {}, [], 0
    os.symlink(src, os.path.join(d, "link.h5"))
    outs = [(k, None) for k in ("fifo", "dir", "socket", "devnull")] + \
        [("input", p) for p in (src, os.path.join(d, "link.h5"), os.path.join(d, ".", "src.h5"))]
    for kind, given in outs:
        for name, write in ws.items():
            if name == "save" and kind == "input":
                continue
            i += 1
            out = given or _special(d, kind, i)
            mode = os.stat(out).st_mode
            res = _outcome(lambda: write(out))
            counts[res.split(":")[0]] = counts.get(res.split(":")[0], 0) + 1
            if res != "refused" or os.stat(out).st_mode != mode or open(src, "rb").read() != data:
                bad.append(f"writer {name} OUT {kind}: {res}")
    return counts, bad


def _cli(cli, argv) -> None:
    from growstage.core.errors import GrowstageError

    if cli(argv) == 2:
        raise GrowstageError("exit 2")


def cli_paths(d: str) -> tuple[dict, list]:
    from growstage.cli import main as cli

    marker = os.path.join(d, "imported")
    for mod in ("weights", "model", "final"):
        open(os.path.join(d, f"{mod}.py"), "w").write(f"open({marker!r}, 'w').write('x')\ndef f(): return None\n")
    cwd = os.getcwd()
    os.chdir(d)
    counts, bad = {}, []
    try:
        for src in ("weights:final.h5", "model:f", "final.py:f", "weights:f", "./model.py:f"):
            for argv in (["export", src, "o.safetensors", "--to", "torch"], ["inspect", src], ["convert", src, "o.h5"],
                         ["diff", src, src], ["average", src, "-o", "o.h5"]):
                res = _outcome(lambda: _cli(cli, argv))
                counts[res.split(":")[0]] = counts.get(res.split(":")[0], 0) + 1
                if res != "refused" or os.path.exists(marker):
                    bad.append(f"cli {' '.join(argv)}: {res}{' (imported!)' if os.path.exists(marker) else ''}")
    finally:
        os.chdir(cwd)
    return counts, bad


def from_checkpoint_configs(d: str, rnd: random.Random, n: int) -> tuple[dict, list]:
    import keras

    import growstage
    from growstage.initializers import FromCheckpoint
    from growstage.interop import initializers

    models = os.path.join(d, "models")
    os.makedirs(models)
    inside = str(growstage.save({"out": {"kernel": np.ones((3, 2), "f4")}}, os.path.join(models, "in.h5")))
    outside = str(growstage.save({"out": {"kernel": np.ones((3, 2), "f4")}}, os.path.join(d, "out.h5")))
    os.symlink(outside, os.path.join(models, "link.h5"))
    os.symlink(d, os.path.join(models, "up"))
    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Dense(2, name="new", kernel_initializer=FromCheckpoint(inside, "out/kernel"))(x))
    model_file = os.path.join(models, "m.keras")
    m.save(model_file)
    with zipfile.ZipFile(model_file) as z:
        members = {k: z.read(k) for k in z.namelist()}
    paths = [outside, os.path.join(models, "..", "out.h5"), os.path.join(models, "link.h5"), "/etc/passwd",
             os.path.join(models, "up", "out.h5"), "../out.h5", d, "/", "/dev/zero", "/proc/self/environ"]
    opened = []
    real_read = initializers.FromCheckpoint._open_path
    initializers.FromCheckpoint._open_path = lambda self: opened.append(real_read(self)[0]) or opened[-1:] + [False]
    counts, bad = {}, []
    try:
        for k in range(n):
            cfg = json.loads(members["config.json"])
            init = cfg["config"]["layers"][1]["config"]["kernel_initializer"]["config"]
            init["path"] = paths[k % len(paths)] if k < 3 * len(paths) else rnd.choice(paths + POOL)
            if rnd.random() < 0.5:
                init["allow_large"] = True
            mf = os.path.join(models, f"c{k}.keras")
            with zipfile.ZipFile(mf, "w") as z:
                for name, data in {**members, "config.json": json.dumps(cfg).encode()}.items():
                    z.writestr(name, data)
            opened.clear()
            res = _outcome(lambda: keras.saving.load_model(mf))
            res = "refused" if res.startswith("escape") and "refused to open" in res else res
            counts[res.split(":")[0]] = counts.get(res.split(":")[0], 0) + 1
            outside_read = [p for p in opened if not os.path.realpath(p).startswith(os.path.realpath(models) + os.sep)]
            if outside_read or res.startswith("escape"):
                bad.append(f"FromCheckpoint path {init['path']!r}: {res}{' outside read' if outside_read else ''}")
    finally:
        initializers.FromCheckpoint._open_path = real_read
    return counts, bad


def net_dicts(rnd: random.Random, n: int) -> tuple[dict, list]:
    import growstage.returnn as gr

    base = {"conv": {"class": "conv", "filter_size": [3], "padding": "same", "n_out": 4, "from": "data"},
            "lstm": {"class": "rec", "unit": "nativelstm2", "n_out": 3, "direction": -1, "from": "conv"},
            "win": {"class": "window", "window_size": 3, "from": "lstm"},
            "flat": {"class": "merge_dims", "axes": "except_time", "from": "win"},
            "ln": {"class": "layer_norm", "from": "flat"}, "comb": {"class": "combine", "kind": "add", "from": ["ln"]},
            "output": {"class": "linear", "n_out": 2, "with_bias": True, "dropout": 0.1, "from": "comb"}}
    counts, bad = {}, []
    for k in range(n):
        net = json.loads(json.dumps(base))
        layer = rnd.choice(sorted(net))
        key = rnd.choice(sorted(net[layer]) + ["class", "from", "trainable", "is_output_layer"])
        net[layer][key] = rnd.choice(POOL + [[layer], rnd.choice(sorted(net))])
        res = _outcome(lambda: gr.build_model(net, {"data": {"dim": 3}}))
        counts[res.split(":")[0]] = counts.get(res.split(":")[0], 0) + 1
        if res.startswith("escape"):
            bad.append(f"net dict {layer}.{key}={net[layer][key]!r}: {res}")
    return counts, bad


def safetensors_files(d: str, rnd: random.Random, n: int) -> tuple[dict, list]:
    import keras
    from safetensors.numpy import save_file

    from growstage.export import from_torch

    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(2, name="out")(x))
    good = os.path.join(d, "good.safetensors")
    w = np.ones((2, 3), "f4")
    w[0, 0] = np.nan
    save_file({"out.weight": w, "out.bias": np.zeros(2, "f4")}, good)
    data = open(good, "rb").read()
    counts, bad = {}, []
    fifo = os.path.join(d, "st.fifo")
    os.mkfifo(fifo)
    for k in range(n):
        p = os.path.join(d, f"st{k}.safetensors")
        mutated = bytearray(data)
        how = k % 3
        if how == 0:
            mutated = mutated[: rnd.randrange(len(mutated))]
        elif how == 1:
            mutated[rnd.randrange(min(len(mutated), 120))] = rnd.randrange(256)
        else:
            mutated[rnd.randrange(len(mutated))] ^= 1 << rnd.randrange(8)
        open(p, "wb").write(bytes(mutated))
        target = fifo if k == 0 else p
        notes = []
        res = _outcome(lambda: notes.extend(from_torch(target, model).notes))
        counts[res.split(":")[0]] = counts.get(res.split(":")[0], 0) + 1
        if res.startswith("escape"):
            bad.append(f"safetensors {how}: {res}")
    rep = from_torch(good, model)
    if not any("non-finite" in n for n in rep.notes):
        bad.append("a NaN in a safetensors file was not counted")
    return counts, bad


def run(d: str, seed: int = 0, configs: int = 60, nets: int = 300, files: int = 60) -> list[str]:
    rnd = random.Random(seed)
    bad_all = []
    for label, (counts, bad) in (("writers", writers(os.path.join(d, "w") if os.makedirs(os.path.join(d, "w")) is None
                                                     else d)),
                                 ("command-line paths", cli_paths(_mk(d, "c"))),
                                 ("FromCheckpoint configs", from_checkpoint_configs(_mk(d, "f"), rnd, configs)),
                                 ("net dicts", net_dicts(rnd, nets)),
                                 ("safetensors files", safetensors_files(_mk(d, "s"), rnd, files))):
        print(f"{label:24s} {sum(counts.values()):4d} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              + f"; harmful or escaped {len(bad)}")
        bad_all += bad
    return bad_all


def _mk(d: str, name: str) -> str:
    p = os.path.join(d, name)
    os.makedirs(p)
    return p
