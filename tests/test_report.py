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


def _row(layer, param, old, new, action="padded"):
    from growstage.engine.report import PlanRow

    return PlanRow(layer, param, f"{layer}/{param}", action, old, new)


def test_one_layers_rows_print_together_beside_collapsed_groups():
    rows = [_row("blstm0", "kernel", (2, 8), (2, 8), "copied"),
            _row("blstm1", "kernel", (8, 8), (12, 12)), _row("blstm1", "rec", (4, 8), (6, 12)),
            _row("blstm1", "bias", (8,), (12,)),
            _row("blstm2", "kernel", (9, 8), (12, 12)), _row("blstm2", "rec", (4, 8), (6, 12)),
            _row("blstm2", "bias", (8,), (16,))]
    labels = [line.split()[0] for line in growstage.Report(rows).table().splitlines()[2:-1]]
    assert labels == ["blstm0/kernel", "blstm1/kernel", "blstm1/bias", "blstm{1,2}/rec", "blstm2/kernel",
                      "blstm2/bias"]


def test_to_json_prints_one_row_per_line_and_round_trips():
    rows = [_row(f"l{i}", "kernel", (2, 3), (4, 3)) for i in range(3)]
    text = growstage.Report(rows, notes=["n"], seconds=0.5, bytes_written=12).to_json()
    lines = text.splitlines()
    assert len(lines) == 3 + 2 + 4  # head, 3 rows, row list end, notes, seconds, bytes, end
    assert all(line.startswith('  {"layer": "l') for line in lines[1:4])
    data = json.loads(text)
    assert [r["target"] for r in data["rows"]] == ["l0/kernel", "l1/kernel", "l2/kernel"]
    assert data["rows"][0]["new_shape"] == [4, 3] and data["notes"] == ["n"] and data["bytes_written"] == 12
