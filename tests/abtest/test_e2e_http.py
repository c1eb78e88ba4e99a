"""Simulated users through a real splitter over loopback HTTP (injected backend, no Triton)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from distillery.abtest.arms import Router
from distillery.abtest.backends import FunctionBackend
from distillery.abtest.embedded import ThreadedSplitter
from distillery.abtest.experiment import run_experiment
from distillery.abtest.exposure import ExposureLog, read_exposures
from distillery.abtest.gate import Gate
from distillery.abtest.httpsim import http_server, request_body
from distillery.abtest.protocol import Limits, parse_request
from distillery.abtest.simulator import SimConfig
from distillery.abtest.splitter import SplitterState
from distillery.config import load_config
from tests.abtest.helpers import two_arm

pytestmark = pytest.mark.e2e


def _truth_by_text(queries) -> dict[tuple[str, str], float]:
    """True grade of each (query, item text as the splitter passes it on)."""
    out = {}
    for q in queries:
        req = parse_request(json.dumps(request_body("u", q)).encode(), Limits())
        out.update({(q.query, t): float(g) for t, g in zip(req.item_texts, q.grades, strict=True)})
    return out


def test_users_through_the_splitter_get_a_decision_and_a_complete_exposure_log(queries, tmp_path):
    truth = _truth_by_text(queries)
    rng = np.random.default_rng(0)

    def score(arm, query, texts):  # the challenger knows the truth; the champion ranks at random
        if arm.name == "challenger":
            return [truth[(query, t)] for t in texts]
        return list(rng.random(len(texts)))

    split = two_arm()
    state = SplitterState(Router(split), FunctionBackend(score), ExposureLog(tmp_path / "exp.jsonl"))
    # One fresh-clone run ended in "rollback" (reasons not kept). The likely cause is the latency guardrail:
    # it judges p99 ratios, and with 50 requests an arm's p99 is its slowest call, so one scheduler stall
    # decides. 200 is the config default; the assertion now prints the gate's reasons.
    cfg = dataclasses.replace(load_config("tiny").abtest, min_users_per_arm=200, min_requests=200)
    with ThreadedSplitter(state) as url:
        res = run_experiment(queries, http_server(url, queries, 8), Gate(cfg, "champion", split.weights),
                             SimConfig(users_per_batch=100, seed=2), 1500)
    assert res.decision.decision == "promote", res.decision.reasons
    exposures = read_exposures(tmp_path / "exp.jsonl")
    assert len(exposures) == res.ops["champion"].requests + res.ops["challenger"].requests
    assert {e["arm"] for e in exposures} == {"champion", "challenger"}
    assert res.decision.arms["challenger"]["ndcg"] > res.decision.arms["champion"]["ndcg"]
