"""The gate: minimum sample, promote, rollback, guardrails, SRM blocking, A/B/n."""

from __future__ import annotations

import dataclasses

from distillery.abtest.arms import Router, split_from_dict
from distillery.abtest.experiment import InProcessArm, in_process_server, run_experiment
from distillery.abtest.gate import Gate
from distillery.abtest.rankers import OracleRanker, RandomRanker, WorstRanker
from distillery.abtest.report import write_report
from distillery.abtest.simulator import SimConfig
from distillery.config import load_config
from tests.abtest.helpers import two_arm

CFG = dataclasses.replace(load_config("tiny").abtest, min_users_per_arm=300, min_requests=100)


def _experiment(queries, challenger: InProcessArm, users=6000, split=None, lose=None, cfg=CFG, arms=None):
    split = split or two_arm()
    arms = arms or {"champion": InProcessArm(RandomRanker()), "challenger": challenger}
    gate = Gate(cfg, split.champion, split.weights)
    serve = in_process_server(queries, Router(split), arms)
    return run_experiment(queries, serve, gate, SimConfig(users_per_batch=200, seed=5), users, lose=lose)


def test_minimum_sample_holds_back_even_a_clear_winner(queries):
    gate_cfg = dataclasses.replace(CFG, min_users_per_arm=100000)
    res = _experiment(queries, InProcessArm(OracleRanker()), users=1000, cfg=gate_cfg)
    assert res.decision.decision == "continue"
    assert any("minimum sample" in r for r in res.decision.reasons)


def test_truly_better_challenger_is_promoted_and_reported(queries, tmp_path):
    res = _experiment(queries, InProcessArm(OracleRanker()))
    d = res.decision
    assert d.decision == "promote" and d.challenger == "challenger"
    assert d.tests["challenger"]["ctr"]["cs_low"] > 0 and d.tests["challenger"]["ctr"]["p_always_valid"] < 0.05
    report = write_report(tmp_path, d, res.history, "ctr")
    assert (tmp_path / "lift.png").stat().st_size > 1000 and "promote" in report.read_text()


def test_truly_worse_challenger_is_rolled_back(queries):
    res = _experiment(queries, InProcessArm(WorstRanker()))
    assert res.decision.decision == "rollback"
    assert any("significantly worse" in r for r in res.decision.reasons)


def test_latency_guardrail_rolls_back_a_slow_challenger(queries):
    res = _experiment(queries, InProcessArm(OracleRanker(), added_delay_ms=20.0))
    assert res.decision.decision == "rollback"
    assert res.decision.guardrails["challenger"]["latency_breach"]
    assert "latency" in res.decision.reasons[0]


def test_error_guardrail_counts_failovers_against_the_challenger(queries):
    res = _experiment(queries, InProcessArm(OracleRanker(), fail_rate=0.05))
    assert res.decision.decision == "rollback"
    assert res.decision.guardrails["challenger"]["error_breach"]
    assert res.ops["champion"].errors == 0


def test_sample_ratio_mismatch_blocks_the_decision(queries):
    # A logger that loses 20% of the challenger's users: the winner must not be promoted on broken data.
    cfg = dataclasses.replace(CFG, min_users_per_arm=1000)
    res = _experiment(queries, InProcessArm(OracleRanker()), users=4000, lose=("challenger", 0.2), cfg=cfg)
    assert res.decision.blocked and res.decision.decision == "continue"
    assert res.decisions.count("promote") == 0
    assert any("sample ratio mismatch" in r for r in res.decision.reasons)


def test_abn_promotes_the_better_challenger_only(queries):
    split = split_from_dict({"experiment": "e", "salt": "s", "champion": "champion", "arms": [
        {"name": "champion", "model": "m", "weight": 34}, {"name": "b", "model": "m", "weight": 33},
        {"name": "c", "model": "m", "weight": 33}]})
    arms = {"champion": InProcessArm(RandomRanker()), "b": InProcessArm(RandomRanker()),
            "c": InProcessArm(OracleRanker())}
    res = _experiment(queries, arms["c"], users=9000, split=split, arms=arms)
    assert res.decision.decision == "promote" and res.decision.challenger == "c"


def test_latency_noise_alone_never_rolls_back(queries):
    # Same latency distribution on both arms, checked after every batch: no guardrail breach at any look.
    noisy = dataclasses.replace(CFG, min_users_per_arm=10**6)
    for seed in range(3):
        split = two_arm(salt=f"noise-{seed}")
        arms = {"champion": InProcessArm(RandomRanker(), base_latency_ms=5.0),
                "challenger": InProcessArm(RandomRanker(), base_latency_ms=5.0)}
        gate = Gate(noisy, "champion", split.weights)
        res = run_experiment(queries, in_process_server(queries, Router(split), arms), gate,
                             SimConfig(users_per_batch=200, seed=seed), 3000, stop_on_decision=False)
        assert "rollback" not in res.decisions
