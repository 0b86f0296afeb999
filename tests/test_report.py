import json

import numpy as np

import growstage
from conftest import build_blstm


def test_table_collapses_repeated_layers_and_json_round_trips():
    old, new = build_blstm(4, depth=4, seed=1), build_blstm(6, depth=4, seed=2)
    rep = growstage.transfer(old, new, mode="subset")
    table = rep.table()
    assert "blstm{2..4}/forward_layer/cell/kernel" in table
    assert "blstm1/forward_layer/cell/kernel" in table  # different input width: its own row
    assert table.splitlines()[-1] == "1 copied, 25 padded"
    full = rep.table(collapse_layers=False)
    assert "blstm3/backward_layer/cell/bias" in full
    data = json.loads(rep.to_json())
    rows = {r["target"]: r for r in data["rows"]}
    assert rows["blstm2/forward_layer/cell/kernel"]["new_split"] == [[6, 6], [6, 6, 6, 6]]
    assert rows["blstm2/forward_layer/cell/kernel"]["fill"] == "init"
    assert data["bytes_written"] > 0
