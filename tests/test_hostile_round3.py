"""Hostile inputs, round three (issue 26): writers that refuse to replace what they must not, paths
that are never imported, FromCheckpoint in an untrusted model file, run identity, hangs, net dicts."""
import os
import socket
import stat

import numpy as np
import pytest

import growstage
from growstage.cli import main as cli_main
from growstage.core.errors import GrowstageError, StoreError
from growstage.filetools import average, convert
from growstage.export import save_safetensors


def _src(tmp_path, name="a.h5", v=1.0):
    return str(growstage.save({"out": {"kernel": np.full((3, 2), v, "f4")}}, str(tmp_path / name)))


def _special(tmp_path, kind):
    p = str(tmp_path / f"out-{kind}")
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        os.mkdir(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(p)
        s.close()
    elif kind == "devnull":
        os.symlink(os.devnull, p)  # a link to /dev/null is /dev/null
    return p


def _writers(tmp_path):
    src = _src(tmp_path)
    return {"save": lambda out: growstage.save({"w": {"v": np.ones(2)}}, out),
            "average": lambda out: average([src], out),
            "convert": lambda out: convert(src, out),
            "export": lambda out: save_safetensors(src, out, types={"out": "Dense"}),
            "cli-average": lambda out: cli_main(["average", src, "-o", out]),
            "cli-convert": lambda out: cli_main(["convert", src, out]),
            "cli-export": lambda out: cli_main(["export", src, out, "--to", "torch", "--type", "out=Dense"])}


def _mode(path):
    return os.lstat(path).st_mode, os.stat(path).st_mode


@pytest.mark.parametrize("kind", ["fifo", "dir", "socket", "devnull"])
def test_writers_refuse_an_out_that_is_not_a_regular_file(tmp_path, kind):
    for name, write in _writers(tmp_path).items():
        out = _special(tmp_path, kind)
        before = _mode(out)
        if name.startswith("cli"):
            assert write(out) == 2, name
        else:
            with pytest.raises(StoreError, match="not a regular file"):
                write(out)
        assert _mode(out) == before, name  # stays what it was
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".growstage-tmp") or ".tmp" in f]
        (os.rmdir if kind == "dir" else os.unlink)(out)


def test_writers_refuse_an_out_that_is_an_input_by_any_spelling(tmp_path):
    src = _src(tmp_path)
    data = open(src, "rb").read()
    link = str(tmp_path / "link.h5")
    os.symlink(src, link)
    os.mkdir(tmp_path / "sub")
    for out in (src, link, str(tmp_path / "sub" / ".." / "a.h5")):
        with pytest.raises(StoreError, match="is an input"):
            average([src], out)
        with pytest.raises(StoreError, match="is an input"):
            convert(link, out)
        with pytest.raises(StoreError, match="is an input"):
            save_safetensors(src, out, types={"out": "Dense"})
        assert cli_main(["average", src, src, "-o", out]) == 2
        with growstage.load(src) as snap, pytest.raises(StoreError, match="is an input"):
            growstage.save(snap, out)  # the file a lazy snapshot still reads from
    assert open(src, "rb").read() == data


def test_an_out_inside_a_fit_checkpoint_dir_input_is_refused(tmp_path):
    from growstage.io.checkpoint_dir import save_checkpoint

    run = tmp_path / "run"
    for e in (1, 2):
        save_checkpoint(str(run), growstage.Snapshot({"w": {"v": growstage.Param(np.full(2, e, "f4"))}}), epoch=e)
    before = {f: open(run / f, "rb").read() for f in os.listdir(run)}
    for out in (run / "epoch-0002.h5", run / "avg.h5"):
        with pytest.raises(StoreError, match="inside the input folder"):
            convert(str(run), str(out))
        assert cli_main(["average", str(run), "-o", str(out)]) == 2
    assert {f: open(run / f, "rb").read() for f in os.listdir(run)} == before


@pytest.mark.tf_only
def test_tf_prefix_files_are_refused_as_outputs_and_export_reads_a_prefix(tmp_path, capsys):
    import tensorflow as tf

    ckpt = tf.train.Checkpoint(w=tf.Variable(np.ones((3, 2), "f4")))
    prefix = ckpt.write(str(tmp_path / "model"))
    before = {f: open(tmp_path / f, "rb").read() for f in os.listdir(tmp_path)}
    data = [f for f in os.listdir(tmp_path) if ".data-" in f][0]
    for given in (prefix, prefix + ".index"):
        for out in (prefix + ".index", str(tmp_path / data), prefix):
            with pytest.raises(StoreError, match="TensorFlow checkpoint"):
                convert(given, out)
    assert {f: open(tmp_path / f, "rb").read() for f in os.listdir(tmp_path)} == before
    out = str(tmp_path / "o.safetensors")
    assert cli_main(["export", prefix, out, "--to", "torch", "--unknown", "raw"]) == 0
    assert os.path.getsize(out) > 0


def test_a_path_is_never_imported(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "weights.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef final(): return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli_main(["export", "weights:final.h5", "o.safetensors", "--to", "torch"]) == 2
    assert "no such file" in capsys.readouterr().err
    for argv in (["inspect", "weights:final"], ["convert", "weights:final", "o.h5"], ["diff", "weights:final", "x"],
                 ["average", "weights:final", "-o", "o.h5"], ["export", "weights.py:final", "o.st", "--to", "torch"]):
        assert cli_main(argv) == 2, argv
    assert not marker.exists()
    assert not os.path.exists("o.safetensors") and not os.path.exists("o.h5")


# 3. FromCheckpoint deserialised from a model file

def _init_model_file(folder, ckpt_path, name="m.keras"):
    import keras

    from growstage.initializers import FromCheckpoint

    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Dense(2, name="new", kernel_initializer=FromCheckpoint(ckpt_path, "out/kernel"))(x))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    m.save(path)
    return path


def _rewrite_config(model_file, edit):
    """The .keras archive with its FromCheckpoint config changed by ``edit(config)`` (as an attacker would)."""
    import json
    import zipfile

    with zipfile.ZipFile(model_file) as z:
        members = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(members["config.json"])
    for layer in cfg["config"]["layers"]:
        if layer["config"].get("kernel_initializer", {}).get("class_name") == "FromCheckpoint":
            edit(layer["config"]["kernel_initializer"]["config"])
    members["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(model_file, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _hostile_configs(tmp_path):
    """(label, edit) pairs: each points the config at a file outside the model's folder."""
    outside = _src(tmp_path, "outside.h5", 7.0)
    os.symlink(outside, tmp_path / "models" / "link.h5")
    os.symlink(str(tmp_path), tmp_path / "models" / "up")
    return [("absolute", lambda c: c.update(path=outside)),
            ("dotdot", lambda c: c.update(path=str(tmp_path / "models" / ".." / "outside.h5"))),
            ("symlink", lambda c: c.update(path=str(tmp_path / "models" / "link.h5"))),
            ("dir-symlink", lambda c: c.update(path=str(tmp_path / "models" / "up" / "outside.h5"))),
            ("etc-passwd", lambda c: c.update(path="/etc/passwd"))]


def test_from_checkpoint_in_a_model_file_opens_only_its_own_folder(tmp_path):
    import keras

    models = tmp_path / "models"
    inside = _src(models if models.mkdir() is None else models, "inside.h5", 3.0)
    model_file = _init_model_file(str(models), inside)
    loaded = keras.saving.load_model(model_file)  # the checkpoint next to the model: allowed
    assert np.all(loaded.get_layer("new").kernel.numpy() == 3.0)
    for label, edit in _hostile_configs(tmp_path):
        _rewrite_config(model_file, edit)
        with pytest.raises(GrowstageError, match="refused to open") as e:
            keras.saving.load_model(model_file)
        assert model_file in str(e.value), label
        with growstage.trusted_paths(str(tmp_path)) if label != "etc-passwd" else growstage.trusted_paths("/nowhere"):
            if label == "etc-passwd":
                with pytest.raises(GrowstageError):
                    keras.saving.load_model(model_file)
            else:
                # allowed: the initializer reads it (then the saved weights load over it, as always)
                assert np.all(keras.saving.load_model(model_file).get_layer("new").kernel.numpy() == 3.0), label


def test_a_config_cannot_set_allow_large_and_code_stays_unrestricted(tmp_path, monkeypatch):
    import keras

    from growstage.initializers import FromCheckpoint

    (tmp_path / "models").mkdir()
    outside = _src(tmp_path, "outside.h5", 5.0)
    init = FromCheckpoint(outside, "out/kernel", allow_large=True)  # in code: any path, its flags kept
    assert np.all(keras.ops.convert_to_numpy(init((3, 2))) == 5.0) and init.allow_large
    assert "allow_large" not in init.get_config()
    assert FromCheckpoint.from_config({**init.get_config(), "allow_large": True}).allow_large is False
    with pytest.raises(GrowstageError, match="no model file known"):
        FromCheckpoint.from_config(init.get_config())((3, 2))  # a bare config: only trusted paths
    monkeypatch.setenv("GROWSTAGE_TRUSTED_PATHS", str(tmp_path))
    assert np.all(keras.ops.convert_to_numpy(FromCheckpoint.from_config(init.get_config())((3, 2))) == 5.0)
    with pytest.raises(GrowstageError, match="'path' must be a string"):
        FromCheckpoint.from_config({**init.get_config(), "path": ["/etc/passwd"]})((3, 2))


# 4. run identity

def _fit_run(d, epochs, *, seed=0, stages=(3, 5), data_seed=0, **kw):
    import keras

    def build(stage):
        x = keras.Input((4,), name="x")
        h = keras.layers.Dense(stage.spec, activation="tanh", name="h0")(x)
        return keras.Model(x, keras.layers.Dense(1, name="out")(h))

    x = np.random.default_rng(data_seed).normal(size=(16, 4)).astype("f4")
    return growstage.fit(growstage.Schedule(build, stages=list(stages)), x, x[:, :1], epochs=epochs, seed=seed,
                         log=None, checkpoint_dir=str(d), keep=10, batch_size=8,
                         compile=lambda m, s: m.compile(optimizer="sgd", loss="mse"), **kw)


def _files(d):
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


def test_resuming_another_runs_folder_is_refused_and_touches_nothing(tmp_path):
    _fit_run(tmp_path, 1)
    before = _files(tmp_path)
    for other, what in (({"seed": 1}, "seed 1 here, 0"), ({"data_seed": 1}, "the data"),
                        ({"stages": (4, 5)}, "stage 0 spec 4 here, 3"), ({"run_id": "b"}, "run_id 'b' here, None")):
        with pytest.raises(GrowstageError, match=f"{tmp_path} holds another run's checkpoints.*{what}"):
            _fit_run(tmp_path, 3, resume=True, **other)  # refused before anything is built or written
        assert _files(tmp_path) == before
    hist = _fit_run(tmp_path, 2, resume=True)  # the owner still resumes
    assert hist.resumed_from.endswith("epoch-0000.h5") and [e["epoch"] for e in hist.epochs] == [0, 1]


def test_an_explicit_run_id_decides_alone(tmp_path):
    _fit_run(tmp_path, 1, run_id="exp-7")
    hist = _fit_run(tmp_path, 2, resume=True, run_id="exp-7", data_seed=3)  # e.g. a dataset re-read: same run
    assert hist.resumed_from.endswith("epoch-0000.h5")
    with pytest.raises(GrowstageError, match="run_id None here, 'exp-7'"):
        _fit_run(tmp_path, 3, resume=True)


# 5. no hangs

@pytest.mark.parametrize("where", ["layers", "layers/out", "/"])
def test_a_hard_link_cycle_is_refused_not_walked_forever(tmp_path, where):
    import h5py

    path = str(tmp_path / "cycle.weights.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/out/vars")
        g.attrs["name"] = "out"
        g.create_dataset("0", data=np.ones((3, 2), "f4"))
        g["loop"] = f[where]  # a hard link to an ancestor
    with pytest.raises(StoreError, match="hard-link cycle"):
        growstage.open_checkpoint(path)
    assert cli_main(["inspect", path]) == 2


def _state(tmp_path, weight):
    from safetensors.numpy import save_file

    p = str(tmp_path / "m.safetensors")
    save_file({"out.weight": weight, "out.bias": np.zeros(2, "f4"), "other.weight": np.ones((5, 5), "f4")}, p)
    return p


def _dense():
    import keras

    x = keras.Input((3,))
    return keras.Model(x, keras.layers.Dense(2, name="out")(x))


def test_from_torch_refuses_special_files_and_reads_only_what_it_takes(tmp_path, monkeypatch):
    from growstage.export import from_torch
    from growstage.interop import torch_files

    fifo = str(tmp_path / "f.safetensors")
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        from_torch(fifo, _dense())
    with pytest.raises(StoreError, match="no such file"):
        from_torch(str(tmp_path / "missing.safetensors"), _dense())
    read = []
    get = torch_files.FileTensors.__getitem__
    monkeypatch.setattr(torch_files.FileTensors, "__getitem__", lambda self, k: read.append(k) or get(self, k))
    rep = from_torch(_state(tmp_path, np.ones((2, 3), "f4")), _dense(), naming={"out": "out"}, ignore_unused=True)
    assert sorted(read) == ["out.bias", "out.weight"] and rep.counts() == {"copied": 2}


def test_from_torch_counts_nan_and_inf_as_every_reader(tmp_path):
    from growstage.export import from_torch

    w = np.ones((2, 3), "f4")
    w[0, 0], w[1, 2] = np.nan, np.inf
    path = _state(tmp_path, w)
    rep = from_torch(path, _dense(), ignore_unused=True)
    assert any("2 non-finite source values" in n for n in rep.notes)
    model = _dense()
    before = model.get_layer("out").kernel.numpy().copy()
    with pytest.raises(GrowstageError, match="on_nonfinite='error'"):
        from_torch(path, model, ignore_unused=True, on_nonfinite="error")
    assert np.array_equal(model.get_layer("out").kernel.numpy(), before)


# 6. RETURNN net dicts

def _lin(**kw):
    return {"output": {"class": "linear", "n_out": 2, "from": "data", **kw}}


MALFORMED = [
    (_lin(n_out=1e9), "'n_out' is 1000000000.0"), (_lin(n_out=2.9), "'n_out' is 2.9"), (_lin(n_out=0), "'n_out' is 0"),
    (_lin(n_out=-3), "'n_out' is -3"), (_lin(n_out=True), "'n_out' is True"), (_lin(n_out="4"), "'n_out' is '4'"),
    (_lin(n_out=10 ** 9), "'n_out' is 1000000000"), (_lin(with_bias="no"), "'with_bias' is 'no'"),
    (_lin(with_bias=0), "'with_bias' is 0"), (_lin(trainable="false"), "'trainable' is 'false'"),
    (_lin(dropout=1.0), "'dropout' is 1.0"), (_lin(dropout=-0.1), "'dropout' is -0.1"),
    (_lin(dropout="0.1"), "'dropout' is '0.1'"), (_lin(activation=["relu"]), "'activation' is \\['relu'\\]"),
    (_lin(**{"from": 3}), "'from' is 3"), (_lin(**{"from": []}), "'from' is \\[\\]"),
    (_lin(**{"from": [None]}), "'from' is \\[None\\]"), (_lin(**{"from": {"a": 1}}), "'from' is"),
    ({"output": {"class": ["linear"], "n_out": 2}}, "'class' is \\['linear'\\]"),
    ({"output": {"class": None}}, "'class' is None"), ({"output": "linear"}, "needs a dict with a 'class'"),
    ({"output": {"class": "rec", "n_out": 2, "direction": True}}, "'direction' is True"),
    ({"output": {"class": "rec", "n_out": 2, "unit": 5}}, "'unit' is 5"),
    ({"output": {"class": "rec", "n_out": 2, "unit_opts": [1]}}, "'unit_opts' is \\[1\\]"),
    ({"output": {"class": "conv", "n_out": 2, "filter_size": "3", "padding": "same"}}, "'filter_size' is '3'"),
    ({"output": {"class": "conv", "n_out": 2, "filter_size": [0], "padding": "same"}}, "'filter_size' is \\[0\\]"),
    ({"output": {"class": "conv", "n_out": 2, "filter_size": [3], "padding": "same", "strides": 1.5}},
     "'strides' is 1.5"),
    ({"output": {"class": "window", "window_size": 2.5}}, "'window_size' is 2.5"),
    ({"output": {"class": "window", "window_size": 10 ** 8}}, "'window_size' is 100000000"),
    ({"output": {"class": "combine", "kind": ["add"]}}, "'kind' is \\['add'\\]"),
    ({"output": {"class": "layer_norm", "epsilon": "1e-6"}}, "'epsilon' is '1e-6'"),
    ({"output": {"class": "layer_norm", "epsilon": float("nan")}}, "'epsilon' is nan"),
    ({"output": {"class": "batch_norm", "momentum": 2}}, "'momentum' is 2"),
    ({"output": {"class": "pad", "axes": "T", "padding": -1}}, "'padding' is -1"),
    ({"output": {"class": "merge_dims", "axes": 3}}, "'axes' is 3"),
    ({"output": {"class": "subnetwork", "subnetwork": [1]}}, "'subnetwork' is \\[1\\]"),
    ({"output": {"class": "copy", "is_output_layer": "yes"}}, "'is_output_layer' is 'yes'"),
    ({"output": {"class": "copy"}, 5: {"class": "copy"}}, "layer name 5 is not a string"),
    ({"output": {"class": "copy", "from": "a"}, "a": {"class": "copy", "from": "b"}, "b": {"class": "copy", "from": "a"}},
     "layers a -> b -> a form a cycle"),
]


@pytest.mark.parametrize("net,match", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_every_malformed_net_dict_is_a_net_dict_error_naming_layer_and_option(net, match):
    import growstage.returnn as gr

    with pytest.raises(gr.NetDictError, match=match) as e:
        gr.build_model(net, {"data": {"dim": 3}})
    assert "output" in str(e.value) or "cycle" in match or "not a string" in match


@pytest.mark.parametrize("extern,match", [({"data": {"dim": 2.5}}, "'dim' is 2.5"), ({"data": [3]}, "not a dict"),
                                          ({"data": {"dim": 3, "sparse": "no"}}, "'sparse' is 'no'"),
                                          ({"data": {"shape": "3"}}, "'shape' is '3'"), ([1], "extern_data must be")])
def test_malformed_extern_data_is_a_net_dict_error(extern, match):
    import growstage.returnn as gr

    with pytest.raises(gr.NetDictError, match=match):
        gr.build_model({"output": {"class": "copy"}}, extern)


def test_a_thousand_layer_chain_builds_without_recursion():
    import growstage.returnn as gr

    net = {f"l{i}": {"class": "copy", "from": f"l{i - 1}" if i else "data"} for i in range(1000)}
    net["output"] = {"class": "linear", "n_out": 2, "from": "l999"}
    model = gr.build_model(net, {"data": {"dim": 3}})
    assert len(model.layers) == 1002 and model.layers[-1].name == "output"


def test_returnn_checkpoints_say_the_lstm_layout_and_refuse_an_ambiguous_one():
    from growstage.core.errors import PlanError
    from growstage.interop.returnn.names import from_returnn
    from growstage.io.readers.base import Entry, Reader

    def reader(names):
        return Reader("mem", "tf1", {n: Entry.of(np.arange(np.prod(s), dtype="f4").reshape(s)) for n, s in names.items()})

    native = {"l1/rec/W": (4, 8), "l1/rec/W_re": (2, 8), "l1/rec/b": (8,)}
    standard = {"l1/rec/lstm_cell/kernel": (6, 8), "l1/rec/lstm_cell/bias": (8,)}
    assert any("LSTM layout nativelstm2 assumed" in n for n in from_returnn(reader(native)).notes)
    assert any("LSTM layout standardlstm assumed" in n for n in from_returnn(reader(standard)).notes)
    with pytest.raises(PlanError, match="both LSTM layouts.*ambiguous; pass layout="):
        from_returnn(reader({**native, **standard}))
    for chosen, other in (("nativelstm2", "standardlstm"), ("standardlstm", "nativelstm2")):
        r = from_returnn(reader({**native, **standard}), layout={"l1": chosen})
        assert any(f"layout {chosen} chosen by layout=; the {other} names ignored" in n for n in r.notes)
        assert r["l1/cell/kernel"].shape == (4, 8)
    with pytest.raises(PlanError, match="layout='standardlstm' but mem holds the names of nativelstm2 only"):
        from_returnn(reader(native), layout="standardlstm")
    with pytest.raises(GrowstageError, match="'l2' is no LSTM layer"):
        from_returnn(reader(native), layout={"l2": "nativelstm2"})
