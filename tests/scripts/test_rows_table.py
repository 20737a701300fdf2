"""scripts/rows_table.py: a table from cached leaderboard rows, the newest row per method, best first."""

import importlib.util
import json

import pytest

from tests.conftest import ROOT


def _module():
    spec = importlib.util.spec_from_file_location("rows_table", ROOT / "scripts" / "rows_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(folder, method, key, written, final, ratio=0.1, status="ok"):
    row = {
        "method": method,
        "status": status,
        "reason": None if status == "ok" else "boom",
        "final_score": final,
        "final_ci_lo": None if final is None else final - 0.01,
        "final_ci_hi": None if final is None else final + 0.01,
        "F": 0.1,
        "ra_ratio": 0.9,
        "ta_ratio": 0.95,
        "acc_forget": 0.5,
        "time_ratio": ratio,
        "efficiency": "rejected" if ratio > 0.2 else "ok",  # eval.row.efficiency_label
        "run_key": key,
    }
    (folder / "rows").mkdir(parents=True, exist_ok=True)
    (folder / "rows" / f"{method}-{key}.json").write_text(json.dumps({"row": row, "written": written}))


def test_newest_row_per_method_best_first_and_rejections_marked(tmp_path, capsys):
    _row(tmp_path, "a", "old", 1.0, 0.09)
    _row(tmp_path, "a", "new", 2.0, 0.03)
    _row(tmp_path, "b", "k", 1.0, 0.05)
    _row(tmp_path, "c", "k", 1.0, 0.0, ratio=0.25)
    _row(tmp_path, "d", "k", 1.0, None, status="failed")
    mod = _module()
    rows, skipped = mod.newest_rows(tmp_path)
    assert [r["method"] for r in rows] == ["b", "a", "c", "d"] and skipped == 1
    assert rows[1]["run_key"] == "new"
    assert mod.main([str(tmp_path), "-m", "c", "a"]) == 0
    out = capsys.readouterr().out
    assert out.index("`c`") < out.index("`a`") and "rejected" in out and "0.0300" in out and "0.0900" not in out


def test_a_folder_without_rows_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        _module().main([str(tmp_path)])
