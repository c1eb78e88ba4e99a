"""``benchmarks/cv.py``: the cross-validation table from finished runs, and a real (lexical) run that resumes."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

CV = Path(__file__).resolve().parents[2] / "benchmarks" / "cv.py"


@pytest.fixture(scope="module")
def cv() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the script by its path
    spec = importlib.util.spec_from_file_location("bench_cv", CV)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_run(runs: Path, name: str, f1: float, acc: float, wall: float) -> None:
    (runs / name).mkdir(parents=True)
    (runs / name / "metrics.json").write_text(json.dumps({"test": {"macro_f1": f1, "accuracy": acc},
                                                          "wall_seconds": wall}))


def test_seeds_average_within_a_fold_then_mean_and_sd_over_folds(cv, tmp_path):
    runs = tmp_path / "runs"
    for fold, seeds in enumerate([(0.5, 0.7), (0.4, 0.4), (0.9, 0.7)]):
        for seed, f1 in enumerate(seeds):
            _fake_run(runs, f"d-f{fold}-s{seed}", f1, 0.5, 10.0)
    _fake_run(runs, "lexical-f0-s0", 0.3, 0.4, 1.0)
    _fake_run(runs, "teacher-f1-s0", 0.8, 0.9, 0.0)
    (runs / "d-f3-s0").mkdir()  # an unfinished run (no metrics.json) is not counted
    (runs / "teacher-f2-s0").mkdir()
    (runs / "teacher-f2-s0" / "metrics.json").write_text(json.dumps({"test": {"n": 0, "missing": 5}}))
    s = cv.summarize(runs)
    assert s["d"]["fold_macro_f1"] == pytest.approx({0: 0.6, 1: 0.4, 2: 0.8})
    assert s["d"]["mean"] == pytest.approx(0.6)
    assert s["d"]["sd"] == pytest.approx(statistics.stdev([0.6, 0.4, 0.8]))  # sd of the fold means, not the runs
    assert (s["d"]["folds_done"], s["d"]["seeds"]) == (3, 2)
    assert s["lexical"]["sd"] is None and s["lexical"]["folds_done"] == 1
    assert s["teacher"]["folds_done"] == 1  # the fold it could not score is left out
    text = cv.table(s, 3, "CV")
    rows = text.splitlines()[4:]
    assert rows[0].startswith("| lexical floor") and "0.3000 ± – (0.300)" in rows[0] and "| 1/3 |" in rows[0]
    assert rows[1] == "| (d) CRSD | 0.6000 ± 0.2000 (0.600, 0.400, 0.800) | 0.5000 | 3/3 | 2 | 10.0 |"
    assert rows[2].startswith("| teacher")


def test_lexical_cv_runs_resume_and_never_touch_the_test_split(cv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cv"
    argv = ["cv.py", "--data", "synthetic:300", "--out", str(out), "--folds", "3", "--methods", "lexical",
            "--profile", "tiny"]
    monkeypatch.setattr(sys, "argv", argv)
    cv.main()
    first = capsys.readouterr().out
    assert first.count("macro-F1") == 3 + 1  # one finished line per fold, and the table header
    result = json.loads((out / "cv.json").read_text())
    assert result["methods"]["lexical"]["folds_done"] == 3
    held = json.loads((out / "folds.json").read_text())["folds"]
    from distillery.config import load_config
    from distillery.data.spec import load
    from distillery.data.splits import split_pairs

    test_q = {p.query_id for p in split_pairs(load("synthetic:300")[0], load_config("tiny").data).test}
    assert not test_q & {q for qs in held.values() for q in qs}
    assert not (out / "final").exists()
    cv.main()  # a rerun skips every finished run and rebuilds the same table
    again = capsys.readouterr().out
    assert "…" not in again and json.loads((out / "cv.json").read_text()) == result
    assert (out / "cv_table.md").read_text().startswith("**Query-grouped 3-fold")
    monkeypatch.setattr(sys, "argv", [*argv, "--set", "train.epochs=3"])  # other settings, same --out
    with pytest.raises(SystemExit, match="other folds or settings"):
        cv.main()
