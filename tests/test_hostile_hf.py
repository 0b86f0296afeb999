"""Hostile Hugging Face folders (issue 25, item 7): each refused as a GrowstageError naming the folder and
the shard, before any file outside the folder is opened; the HF cache's own symlinked layout loads.
The cases are benchmarks/hf_hostile_cases.py's, which benchmarks/hostile.py measures too."""
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest

import growstage

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("hf_hostile_cases", ROOT / "benchmarks" / "hf_hostile_cases.py")
CASES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(CASES)

_OPENED: list = []
_WATCH = [False]


def _audit(event, args):
    if _WATCH[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only while _WATCH is set


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("hfhostile")
    secret = d / "secret.bin"
    secret.write_bytes(b"SECRET-BYTES-OUTSIDE-THE-FILE!!!" * 2)
    return str(d), str(secret), CASES.cases(str(d), str(secret))


def test_every_hostile_folder_is_refused_naming_folder_and_shard(cases):
    d, secret, found = cases
    for name, (folder, expected) in found.items():
        _OPENED.clear()
        _WATCH[0] = True
        try:
            with growstage.open_checkpoint(folder) as r:
                arrays = {n: r.read(n) for n in r}
            outcome, msg = "loaded", ""
        except growstage.GrowstageError as e:
            outcome, msg = "refused", str(e)
        finally:
            _WATCH[0] = False
        assert outcome == expected, (name, msg)
        outside = [p for p in _OPENED if os.path.realpath(p) in (os.path.realpath(secret),
                                                                 os.path.join(os.path.realpath(d), "outside.safetensors"))]
        assert outside == [], name  # refused before anything outside was opened
        if expected == "refused":
            assert folder in msg, (name, msg)
            if "shard" in name or name in ("hf undefined dtype", "hf header beyond file", "hf overlapping offsets",
                                           "hf out-of-bounds offsets", "hf tensor missing from shard"):
                assert "b.safetensors" in msg or "a.safetensors" in msg, (name, msg)
        else:
            assert sorted(arrays) == ["x", "y"] and np.array_equal(arrays["y"], np.ones(4, "f4"))


def test_a_link_leaving_the_folder_is_refused_also_through_transfer(cases):
    import keras

    _, _, found = cases
    folder, _ = found["hf ../ in weight_map"]
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(4, name="out")(x))
    with pytest.raises(growstage.StoreError, match="outside the folder: refused"):
        growstage.transfer(folder, model)


@pytest.mark.parametrize("files", [["model.safetensors"], ["model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                                          "model-00002-of-00002.safetensors"]])
def test_hf_weights_without_config_json_say_so(tmp_path, files):
    for name in files:
        (tmp_path / name).write_bytes(b"{}")
    with pytest.raises(growstage.GrowstageError) as e:
        growstage.open_checkpoint(str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and "no config.json" in msg and "copy the config.json" in msg, msg
    assert ("2 *.safetensors shards" in msg) == (len(files) == 3), msg
