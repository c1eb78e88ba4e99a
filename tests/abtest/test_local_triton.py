"""`distillery abtest` end to end: a real Triton, the splitter as its own process, simulated users, the gate."""

from __future__ import annotations

import json

import pytest

from distillery.abtest.exposure import read_exposures
from distillery.cli import main
from tests.abtest.helpers import make_student

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_cli_runs_triton_splitter_simulator_and_gate(tmp_path):
    champ, chall = make_student(tmp_path / "s1", 1), make_student(tmp_path / "s2", 2)
    out = tmp_path / "ab"
    code = main(["abtest", "--champion", str(champ), "--challenger", str(chall), "--data", "synthetic:300",
                 "--users", "200", "--weights", "50,50", "--out", str(out), "--profile", "tiny",
                 "--set", "abtest.users_per_batch=100", "--set", "abtest.min_users_per_arm=50",
                 "--set", "abtest.min_requests=20"])
    assert code == 0
    decision = json.loads((out / "decision.json").read_text())
    assert decision["decision"] in ("promote", "rollback", "continue") and decision["reasons"]
    assert set(decision["arms"]) == {"champion", "challenger"}
    assert {"ctr", "cvr", "gtv", "ndcg", "p99_ms"} <= set(decision["arms"]["challenger"])
    assert "p_always_valid" in decision["tests"]["challenger"]["ctr"]
    exposures = read_exposures(out / "exposures.jsonl")
    requests = sum(decision["arms"][a]["requests"] for a in ("champion", "challenger"))
    assert len(exposures) == requests and not any(e["fallback"] for e in exposures)
    metrics = (out / "splitter_metrics.prom").read_text()
    assert 'splitter_requests_total{arm="challenger",outcome="ok"}' in metrics
    for f in ("report.md", "lift.png", "arms.png", "events.jsonl", "split.json"):
        assert (out / f).stat().st_size > 0
    assert "Traceback" not in (out / "splitter.log").read_text()
