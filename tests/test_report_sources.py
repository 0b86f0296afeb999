"""Reports show sources (issue 27, item 6): each row carries the source tensor's own name and the rule
that mapped it, in the table and in JSON; preload reports what it ignored, missed and kept."""
import json

import keras
import numpy as np

import growstage


def _model(names=("enc", "out")):
    x = keras.Input((3,))
    h = keras.layers.Dense(4, name=names[0])(x)
    return keras.Model(x, keras.layers.Dense(2, name=names[1])(h))


def test_rules_and_rename_show_the_source_name_and_the_rule(tmp_path):
    src = _model()
    path = tmp_path / "old.npz"
    np.savez(path, **{f"model/{k}": v.read() for k, v in growstage.snapshot(src).flat().items()})
    rep = growstage.transfer(str(path), _model(("encoder", "out")), rules={"strip_prefix": "model/"},
                             rename={"enc": "encoder"})
    row = rep.row("encoder/kernel")
    assert (row.source_name, row.rule) == ("model/enc/kernel", "rules: strip_prefix 'model/'; rename 'enc' -> 'encoder'")
    assert rep.row("out/bias").source_name == "model/out/bias"
    assert np.array_equal(keras.ops.convert_to_numpy(rep.plan.targets["encoder"].layer.kernel),
                          keras.ops.convert_to_numpy(src.get_layer("enc").kernel))
    rows = {r["target"]: r for r in json.loads(rep.to_json())["rows"]}
    assert rows["encoder/kernel"]["source_name"] == "model/enc/kernel" and "rename 'enc'" in rows["encoder/kernel"]["rule"]
    table = rep.table()
    assert "rule" in table.splitlines()[0] and "model/enc/kernel" in table and "scope" not in table
    scoped = growstage.plan(str(path), _model(("encoder", "out")), rules={"scopes": {"model/enc/": "encoder/",
                                                                                     "model/out/": "out/"}})
    assert scoped.rows[0].rule == "rules: scope 'model/enc/' -> 'encoder/'"


def test_same_names_need_no_rule_column():
    rep = growstage.transfer(_model(), _model())
    assert all(r.rule is None and r.source_name is None for r in rep.rows)
    assert "rule" not in rep.table().splitlines()[0]


def test_preload_reports_var_name_mapping_ignored_missing_and_kept(tmp_path):
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{"old_enc/w": np.ones((3, 4), "f4"), "enc/bias": np.ones(4, "f4"), "extra": np.zeros(2, "f4")})
    m = _model()
    rep = growstage.preload(m, {"a": {"filename": str(path), "var_name_mapping": {"enc/kernel": "old_enc/w"},
                                      "ignore_missing": True, "ignore_params_prefixes": ["out/"]}})
    got = {(r.target or r.source): (r.action, r.source_name, r.rule, r.reason) for r in rep.rows}
    assert got["enc/kernel"][:3] == ("copied", "old_enc/w", "preload 'a': var_name_mapping")
    assert got["enc/bias"][:3] == ("copied", "enc/bias", "preload 'a': same name")
    assert got["out/kernel"] == ("kept-init", None, None, "preload 'a': in ignore_params")
    assert got["extra"][0] == "unused"
    rep = growstage.preload(m, {"a": {"filename": str(path), "ignore_missing": True, "only": ["enc"]}})
    got = {(r.target or r.source): (r.action, r.reason) for r in rep.rows}
    assert got["enc/kernel"] == ("kept-init", "preload 'a': missing 'enc/kernel' (ignore_missing)")
    assert got["out/bias"] == ("kept-init", "not in only=: untouched")
