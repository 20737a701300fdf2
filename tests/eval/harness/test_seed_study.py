"""The summary across forget sets (eval.harness.seed_study) from hand-made leaderboard tables: no training."""

import math

import numpy as np
import pandas as pd
import pytest

from data.presets import get_preset
from eval.harness import seed_study
from eval.harness.row import COLUMNS


def _table(scores: dict, failed=()) -> pd.DataFrame:
    rows = []
    for m, s in scores.items():
        row = {c: np.nan for c in COLUMNS} | {
            "method": m,
            "status": "ok",
            "reason": "",
            "final_score": s,
            "reference": m in ("none", "retrain"),
        }
        rows.append(row | {"normalized_score": s / scores["retrain"]})
    for m in failed:
        rows.append({c: np.nan for c in COLUMNS} | {"method": m, "status": "failed", "reason": "boom"})
    return pd.DataFrame(rows, columns=COLUMNS)


def _board(tmp_path, seed, scores, failed=()):
    preset = get_preset("tiny").with_forget(seed=seed)
    return {
        "forget_seed": seed,
        "table": _table(scores, failed),
        "dir": tmp_path / "results" / preset.tag,
        "preset": preset,
        "bank": f"bank{seed}",
    }


def test_summary_files_and_contents(tmp_path):
    boards = [
        _board(tmp_path, 1, {"retrain": 0.2, "a": 0.1, "b": 0.05, "c": 0.02, "none": 0.0}),
        _board(tmp_path, 2, {"retrain": 0.3, "b": 0.12, "a": 0.11, "none": 0.0}, failed=["c"]),
        _board(tmp_path, 3, {"retrain": 0.25, "a": 0.1, "b": 0.05, "c": 0.02, "none": 0.0}),
    ]
    tag = seed_study.summary_tag(get_preset("tiny"), [1, 2, 3])
    assert tag == "tiny-forget-seeds-1-2-3"
    assert seed_study.summary_tag(get_preset("tiny").with_forget(size=20), [4, 5]) == "tiny-forget-n20-seeds-4-5"
    out = seed_study.write_summary(boards, tmp_path / "results" / tag, preset=get_preset("tiny"))
    assert sorted(p.name for p in out["files"]) == sorted(seed_study.FILES)
    assert (out["dir"] / "kendall_tau.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    t = pd.read_csv(out["dir"] / "summary.csv").set_index("method")
    assert list(t.index) == ["retrain", "a", "b", "c", "none"]  # by mean final score
    assert t.loc["retrain", "final_score_mean"] == pytest.approx(0.25)
    assert t.loc["a", "final_score_std"] == pytest.approx(np.std([0.1, 0.11, 0.1], ddof=1))
    assert t.loc["c", "n_sets"] == 2 and math.isnan(t.loc["c", "final_score_s2"]) and t.loc["c", "failed_on"] == "s2"
    assert math.isnan(t.loc["c", "rank_s2"]) and t.loc["c", "rank_s1"] == 4
    assert t.loc["a", "rank_s2"] == 3 and t.loc["b", "rank_s2"] == 2
    assert t.loc[["none", "retrain"], "reference"].all() and not t.loc[["a", "b", "c"], "reference"].any()
    assert t.loc["a", "normalized_score_mean"] == pytest.approx(np.mean([0.1 / 0.2, 0.11 / 0.3, 0.1 / 0.25]))

    # tau over a, b, c only: s1 = s3; s2 swaps a and b (and has no c)
    tau = pd.read_csv(out["dir"] / "kendall_tau.csv", index_col="forget_set")
    assert tau.loc["s1", "s3"] == pytest.approx(1) and tau.loc["s1", "s2"] == pytest.approx(-1)
    assert out["mean_tau"] == pytest.approx((1 - 1 - 1) / 3)

    md = (out["dir"] / "summary.md").read_text()
    assert md.startswith("# Rankings across forget sets: preset `tiny`, forget seeds 1, 2, 3")
    assert "left out of τ" in md and "`none`, `retrain`" in md and "Mean τ over the 3 pairs" in md
    assert "../tiny/leaderboard.md" in md and "../tiny-forget-f0.1-s2/leaderboard.md" in md
    assert "failed: `c`" in md and "![" in md


def test_score_table_marks_failed_and_absent_methods_nan():
    t1 = _table({"retrain": 0.2, "a": 0.1, "none": 0.0}, failed=["b"])
    t2 = _table({"retrain": 0.2, "b": 0.1, "none": 0.0})
    s = seed_study.score_table({"s1": t1, "s2": t2})
    assert list(s.columns) == ["s1", "s2"] and list(s.index) == ["retrain", "a", "none", "b"]
    assert np.isnan(s.loc["b", "s1"]) and np.isnan(s.loc["a", "s2"]) and s.loc["b", "s2"] == 0.1


def test_one_board_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        seed_study.write_summary(
            [_board(tmp_path, 1, {"retrain": 0.2, "none": 0.0})], tmp_path, preset=get_preset("tiny")
        )
