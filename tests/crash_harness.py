"""Crash safety, as it happens: writers killed with SIGKILL at random moments.

Each round starts a writer process that writes checkpoints (``save_checkpoint``,
keeping 3) and plain snapshots into one directory, continuing from the latest
complete checkpoint, and kills it after a random delay.  After every kill:
every final-named file loads, verifies and holds exactly the values of its
epoch; the latest complete checkpoint is at least the last epoch the writer
reported; and after ``latest_checkpoint`` no temporary file is left.

    python tests/crash_harness.py --kills 200          # the full run (about 4 minutes)
    python tests/crash_harness.py --writers 2 --kills 20   # two writers sharing the directory
    python tests/crash_harness.py --bitflips 50            # flip a bit in the newest checkpoint, then resume
    python tests/crash_harness.py --prepare-ahead 200      # kill fit(prepare_ahead=True) at growth epochs, resume

``--prepare-ahead``: a growing ``fit(prepare_ahead=True)`` run is killed with SIGKILL around a
rebuild, by turns inside the epoch before it (the background thread is preparing the next stage),
just after that epoch's checkpoint (the rebuild itself), or inside that epoch with the resuming
process killed too; a fresh process resumes it (``resume=True``, prepare_ahead again) and must exit
normally (no signal: a SIGSEGV counts as a crash; faulthandler prints its stack) and end
bit-identical to an uninterrupted run.

``--bitflips``: a growing ``fit`` run is cut short after a random epoch, one random bit of its
newest checkpoint is flipped, and ``fit(resume=True)`` must resume from the newest intact
checkpoint and end bit-identical (params and optimizer slots) to an uninterrupted run.

The test suite runs a smaller count.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def content(epoch: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(epoch)
    return {"enc": {"kernel": rng.normal(size=(512, 1024)).astype("f4"), "bias": np.full(1024, epoch, "f4")},
            "out": {"kernel": rng.normal(size=(1024, 64)).astype("f4")}}


def writer(directory: str, offset: int, stride: int) -> None:
    from growstage.io.checkpoint_dir import latest_checkpoint, save_checkpoint
    from growstage.io.store import save
    from growstage.core.values import Snapshot, as_snapshot

    found = latest_checkpoint(directory)
    epoch = offset
    if found is not None:
        done = int(found[1].meta["epoch"])
        found[1].close()
        epoch = done + 1
        while epoch % stride != offset:
            epoch += 1
    while True:
        snap = as_snapshot(content(epoch))
        snap = Snapshot(snap.layers, meta={"epoch": epoch})
        save_checkpoint(directory, snap, epoch=epoch, keep=3)
        save(snap, os.path.join(directory, f"snap-{epoch % 4}.h5"))
        print(epoch, flush=True)
        epoch += stride


def check(directory: str, reported: int | None) -> str | None:
    """None when the directory is sound, else what is wrong."""
    from growstage.io.checkpoint_dir import latest_checkpoint, list_checkpoints, verify
    from growstage.core.errors import StoreError
    from growstage.io.store import TMP_PREFIX, load

    for name in sorted(os.listdir(directory)):
        if name.startswith(TMP_PREFIX):
            continue
        path = os.path.join(directory, name)
        try:
            snap = load(path)
            verify(snap)
        except StoreError as e:
            if not os.path.exists(path):  # rotated away by a live writer meanwhile
                continue
            return f"{name} does not load: {e}"
        epoch = int(snap.meta["epoch"])
        want = content(epoch)
        for lname, params in want.items():
            for pname, arr in params.items():
                if not np.array_equal(snap[lname][pname].read(), arr):
                    return f"{name} holds wrong values for {lname}/{pname}"
        snap.close()
    found = latest_checkpoint(directory)
    if reported is not None:
        if found is None or int(found[1].meta["epoch"]) < reported:
            return f"latest checkpoint {found and found[1].meta['epoch']} is older than reported epoch {reported}"
    if found is not None:
        found[1].close()
    stray = [n for n in os.listdir(directory) if n.startswith(TMP_PREFIX)]
    if stray:
        return f"temporary files left after latest_checkpoint: {stray}"
    if len(list_checkpoints(directory)) > 3 + 3:
        return "rotation did not keep the count bounded"
    return None


def run(kills: int, writers: int = 1, seed: int = 0, directory: str | None = None, log=print,
        stats: dict | None = None) -> list[str]:
    """Returns the list of failures (empty: every round was sound); ``stats`` gets the count of kills that
    landed in the middle of a write (``mid_write``)."""
    rnd = random.Random(seed)
    directory = directory or tempfile.mkdtemp(prefix="growstage-crash-")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    failures: list[str] = []
    mid_write = 0
    t0 = time.perf_counter()
    for k in range(kills):
        procs = [subprocess.Popen([sys.executable, __file__, "--writer", directory, "--offset", str(i),
                                   "--stride", str(writers)], stdout=subprocess.PIPE, env=env)
                 for i in range(writers)]
        time.sleep(rnd.uniform(0.15, 1.2))
        for p in procs:
            p.send_signal(signal.SIGKILL)
        reported = None
        for p in procs:
            out, _ = p.communicate()
            epochs = [int(x) for x in out.split()]
            if epochs:
                reported = max(reported or -1, max(epochs))
        mid_write += any(n.startswith(".growstage-tmp-") for n in os.listdir(directory))
        problem = check(directory, reported if writers == 1 else None)
        if problem:
            failures.append(f"kill {k}: {problem}")
    if stats is not None:
        stats["mid_write"] = mid_write
    log(f"{kills} kills of {writers} writer(s) in {time.perf_counter() - t0:.0f} s, {mid_write} of them in the "
        f"middle of a write (a temporary file was left): {len(failures)} failures; directory {directory}")
    return failures


def _fit(directory: str, epochs: int, resume: bool = False, prepare_ahead: bool = False, samples: int = 16,
         on_epoch_end=None):
    import keras

    import growstage
    from growstage.framework.optimizer import optimizer_state

    def build(stage):
        x = keras.Input((4,), name="x")
        h = keras.layers.Dense(stage.spec, activation="tanh", name="h0")(x)
        return keras.Model(x, keras.layers.Dense(2, name="out")(h))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 4)).astype("f4")
    stages = [3, 5] if not prepare_ahead else [3, 5, 7, 9]
    hist = growstage.fit(growstage.Schedule(build, stages=stages, repetitions=2), x, x[:, :2], epochs=epochs,
                         seed=0, checkpoint_dir=directory, keep=10, resume=resume, shuffle=False, batch_size=8,
                         compile=lambda m, s: m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse"), log=None,
                         prepare_ahead=prepare_ahead, on_epoch_end=on_epoch_end)
    state = optimizer_state(hist.model)
    flat = {f"{l}/{p}": a for l, ps in growstage.snapshot(hist.model).values_dict().items() for p, a in ps.items()}
    flat.update({f"@opt/{l}/{p}#{f}": a for l, ps in state["slots"].items() for p, fs in ps.items() for f, a in fs.items()})
    return hist, flat


def bitflips(rounds: int, seed: int = 0, epochs: int = 4, log=print, positions: list | None = None) -> list[str]:
    """Flip one random bit of the newest checkpoint of a cut-short run, resume, compare; returns the failures.

    ``positions[k]`` (when given and not None) is the byte flipped in round ``k``."""
    import shutil
    import warnings

    from growstage.io.checkpoint_dir import checkpoint_path

    rnd = random.Random(seed)
    ref_dir = tempfile.mkdtemp(prefix="growstage-flip-ref-")
    _, want = _fit(ref_dir, epochs)
    failures = []
    for k in range(rounds):
        done = rnd.randint(1, epochs - 1)  # the run was cut after epoch done-1
        d = tempfile.mkdtemp(prefix="growstage-flip-")
        for e in range(done):
            shutil.copy(checkpoint_path(ref_dir, e), checkpoint_path(d, e))
        victim = str(checkpoint_path(d, done - 1))
        data = bytearray(open(victim, "rb").read())
        pos, bit = rnd.randrange(len(data)), rnd.randrange(8)
        if positions and k < len(positions) and positions[k] is not None:
            pos = positions[k]
        data[pos] ^= 1 << bit
        open(victim, "wb").write(bytes(data))
        # bytes 28..511 are the user block's padding, which nothing reads: the file stays intact
        newest = done - 1 if 28 <= pos < 512 else done - 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            hist, got = _fit(d, epochs, resume=True)
        expect = str(checkpoint_path(d, newest)) if newest >= 0 else None
        if hist.resumed_from != expect:
            failures.append(f"round {k}: flip at byte {pos} bit {bit}: resumed from {hist.resumed_from}, not {expect}")
        elif got.keys() != want.keys() or any(not np.array_equal(got[n], want[n]) for n in want):
            failures.append(f"round {k}: flip at byte {pos} bit {bit}: the resumed run differs from an uninterrupted one")
        shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(ref_dir, ignore_errors=True)
    log(f"{rounds} bit flips then resume: {len(failures)} failures")
    return failures


AHEAD_EPOCHS, AHEAD_SAMPLES = 8, 2048  # four stages of two epochs: rebuilds before epochs 2, 4 and 6


def ahead_child(directory: str, resume: bool, out: str | None) -> None:
    """One fit(prepare_ahead=True) process: says each finished epoch; with ``out``, saves the final values."""
    def said(epoch, model, logs):
        print(epoch, flush=True)

    _, flat = _fit(directory, AHEAD_EPOCHS, resume=resume, prepare_ahead=True, samples=AHEAD_SAMPLES,
                   on_epoch_end=said)
    if out:
        np.savez(out, **flat)


def _ahead_proc(directory: str, resume: bool, out: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONFAULTHANDLER="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    args = [sys.executable, __file__, "--ahead-child", directory] + (["--resume"] if resume else []) + \
        (["--out", out] if out else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


PHASES = ("epoch", "boundary", "resume")  # where a --prepare-ahead kill lands (see prepare_ahead_kills)


def _kill_after(p: subprocess.Popen, epoch: int, delay: float) -> None:
    """Kill ``p`` ``delay`` seconds after it says epoch ``epoch`` finished (-1: after it started)."""
    if epoch >= 0:
        for line in p.stdout:
            if int(line) == epoch:
                break
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.communicate()


def prepare_ahead_kills(kills: int, seed: int = 0, log=print, phases: tuple = PHASES) -> list[str]:
    """Kill fit(prepare_ahead=True) around a rebuild, resume, compare; returns the failures.

    Each kill lands, by turns, in one of ``phases``: ``epoch``: inside the epoch before a rebuild (the
    thread preparing the next stage); ``boundary``: just after that epoch's checkpoint (the rebuild taking
    the prepared model, the old model's traces released); ``resume``: as ``epoch``, then the resuming
    process is killed as well, early (while its first epoch traces beside the thread), and resumed again."""
    import shutil

    rnd = random.Random(seed)
    ref_dir = tempfile.mkdtemp(prefix="growstage-ahead-ref-")
    ref = _ahead_proc(ref_dir, False, os.path.join(ref_dir, "final.npz"))
    _, err = ref.communicate()
    if ref.returncode != 0:
        return [f"the uninterrupted run failed ({ref.returncode}): {err.decode()[-2000:]}"]
    want = dict(np.load(os.path.join(ref_dir, "final.npz")))
    failures, t0 = [], time.perf_counter()
    for k in range(kills):
        d = tempfile.mkdtemp(prefix="growstage-ahead-")
        before, phase = rnd.choice([1, 3, 5]), phases[k % len(phases)]  # the epoch before a rebuild
        if phase == "boundary":
            _kill_after(_ahead_proc(d, False), before, rnd.uniform(0.0, 0.3))
        else:
            _kill_after(_ahead_proc(d, False), before - 1, rnd.uniform(0.0, 0.6))
        if phase == "resume":
            first = _ahead_proc(d, True)
            _kill_after(first, -1, rnd.uniform(2.0, 8.0))  # importing TensorFlow alone takes about 2 s
            if first.returncode not in (-signal.SIGKILL, 0):
                failures.append(f"kill {k} ({phase}, epoch {before}): the first resume exited with {first.returncode}")
        r = _ahead_proc(d, True, os.path.join(d, "final.npz"))
        _, err = r.communicate()
        if r.returncode != 0:
            failures.append(f"kill {k} ({phase}, epoch {before}): the resume exited with {r.returncode}: "
                            f"{err.decode()[-3000:]}")
        else:
            got = dict(np.load(os.path.join(d, "final.npz")))
            if got.keys() != want.keys() or any(not np.array_equal(got[n], want[n]) for n in want):
                failures.append(f"kill {k} ({phase}, epoch {before}): the resumed run differs from an uninterrupted one")
        shutil.rmtree(d, ignore_errors=True)
        log(f"kill {k} ({phase}, epoch {before}): "
            f"{'FAILED' if failures and failures[-1].startswith(f'kill {k} ') else 'ok'}")
    shutil.rmtree(ref_dir, ignore_errors=True)
    log(f"{kills} prepare_ahead kills then resume in {time.perf_counter() - t0:.0f} s: {len(failures)} failures")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--writers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bitflips", type=int, default=0, help="bit-flip-then-resume rounds instead of kills")
    ap.add_argument("--prepare-ahead", dest="prepare_ahead", type=int, default=0,
                    help="kills of fit(prepare_ahead=True) at growth epochs, each resumed and compared")
    ap.add_argument("--ahead-child", dest="ahead_child", help=argparse.SUPPRESS)
    ap.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--writer", help=argparse.SUPPRESS)
    ap.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stride", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)  # run as a script from a checkout
    if args.writer:
        writer(args.writer, args.offset, args.stride)
        return 0
    if args.ahead_child:
        ahead_child(args.ahead_child, args.resume, args.out)
        return 0
    if args.prepare_ahead:
        failures = prepare_ahead_kills(args.prepare_ahead, args.seed)
    elif args.bitflips:
        failures = bitflips(args.bitflips, args.seed)
    else:
        failures = run(args.kills, args.writers, args.seed)
    for f in failures:
        print(f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
