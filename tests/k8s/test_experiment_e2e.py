"""RelevanceExperiment outcomes through the real operator (``kopf run``, a subprocess) over the Kubernetes API
protocol (kmock): a failing challenger is rolled back and the why is recorded; the gate's sequential test
survives an operator restart. (Promotion into the repository: tests/k8s/test_operator_e2e.py.)"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.k8s.kmock_adapter import Cluster
from tests.k8s.operator_proc import NS, S3_ENV, Operator, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
EXPS = f"/apis/distillery.relevance.dev/v1alpha1/namespaces/{NS}/relevanceexperiments"
CMS = f"/api/v1/namespaces/{NS}/configmaps"
SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "relevanceexperiment.yaml"


@dataclass
class Repository:
    """A model repository on the S3 endpoint, as the serving Triton reads it."""

    endpoint: str
    uri: str

    def champion(self) -> int:
        import boto3

        bucket, _, prefix = self.uri.removeprefix("s3://").partition("/")
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/distillery-repository.json")["Body"].read()
        return int(json.loads(body)["champion"])


def two_version_repository(tmp_path: Path, endpoint: str, uri: str = "s3://distillery-models/triton") -> Repository:
    """Versions 1 (champion) and 2 (challenger) of tiny students, uploaded to ``uri`` on ``endpoint``."""
    from distillery.export.repository import build_repository
    from distillery.storage import S3Settings, client, copy_tree
    from tests.abtest.helpers import make_student

    local = tmp_path / "repo"
    build_repository(make_student(tmp_path / "s1", 1), local, version=1)
    build_repository(make_student(tmp_path / "s2", 2), local, version=2, promote=False)
    settings = S3Settings(endpoint_url=endpoint)
    old = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)  # boto3 reads credentials from the environment only
    try:
        s3 = client(settings)
        bucket = uri.removeprefix("s3://").partition("/")[0]
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
        copy_tree(local, uri, settings)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Repository(endpoint, uri)


@pytest.fixture()
def world(tmp_path: Path, s3_server: str) -> Iterator[tuple[Cluster, Operator]]:
    with Cluster() as cluster:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(cluster.kubeconfig()))
        env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL_S3": s3_server, "KUBECONFIG": str(kubeconfig),
               "KFP_HOST": "http://127.0.0.1:9", "DISTILLERY_TICK_SECONDS": "0.3", "DISTILLERY_RETRY_SECONDS": "1",
               "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        op = Operator(env, tmp_path / "operator.log")
        try:
            yield cluster, op
        finally:
            op.stop()


def write_users(log: Path, weights: list[float], users: int, ctr: float, fallback: float, seed: int) -> None:
    """Exposures as the splitter writes them (a share ``fallback`` of the challenger's requests failed over to
    the champion) and click events as clients POST them, users in proportion to ``weights``."""
    rng = np.random.default_rng(seed)
    now = time.time()
    n_challenger = round(users * weights[1] / 100)
    with log.open("a") as f:
        for u in range(users):
            arm, uid = ("challenger" if u < n_challenger else "champion"), f"s{seed}-u{u}"
            failed = arm == "challenger" and rng.random() < fallback
            f.write(json.dumps({"ts": now, "request_id": uid, "user_id": uid, "arm": arm,
                                "served_by": "champion" if failed else arm, "fallback": failed,
                                "items": [f"i{k}" for k in range(10)], "latency_ms": 5.0}) + "\n")
            for k in range(int(rng.binomial(10, ctr))):
                f.write(json.dumps({"ts": now, "event_id": f"{uid}-{k}", "event": "click", "user_id": uid,
                                    "arm": arm}) + "\n")


def _experiment(log: Path, **gate: Any) -> dict[str, Any]:
    cr = yaml.safe_load(SAMPLE.read_text())
    cr["spec"].update(analysisIntervalSeconds=1, metricsSource={"uri": str(log)})
    cr["spec"]["gate"].update(minUsers=100, guardrailMetrics=[], maxAnalysesPerStep=0, **gate)
    return cr


def _split(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.request("GET", f"{CMS}/distillery-splitter") or {}
    return json.loads((cm.get("data") or {}).get("split.json", "null") or "null") or {"arms": []}


def _status(cluster: Cluster) -> dict[str, Any]:
    return (cluster.request("GET", f"{EXPS}/relevance-v2") or {}).get("status") or {}


def test_a_failing_challenger_is_rolled_back_and_the_reason_recorded(world: tuple[Cluster, Operator],
                                                                     tmp_path: Path) -> None:
    cluster, op = world
    log = tmp_path / "splitter-0.jsonl"
    log.touch()
    cluster.request("POST", EXPS, _experiment(log))
    op.start()
    wait_for("the first step", lambda: [a["weight"] for a in _split(cluster)["arms"]] == [90, 10], op)
    # 10% of the challenger's requests failed over (limit 1%): the users were served, the challenger judged.
    write_users(log, [90, 10], users=3000, ctr=0.1, fallback=0.10, seed=1)
    wait_for("the rollback", lambda: _status(cluster).get("phase") == "RolledBack", op)

    st = _status(cluster)
    assert st["decision"] == "rollback" and st["champion"] == {"model": "relevance", "version": 1}
    assert [(a["model"], a["weight"]) for a in _split(cluster)["arms"]] == [("relevance_v1", 100), ("relevance_v2", 0)]
    cond = {c["type"]: c for c in st["conditions"]}["RolledBack"]
    assert (cond["status"], cond["reason"]) == ("True", "GateRollback")
    assert "error rate" in cond["message"] and "failovers count against it" in cond["message"], cond
    assert st["message"] == cond["message"]
    events = cluster.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    (ev,) = [e for e in events if e.get("reason") == "RolledBack"]
    assert ev["type"] == "Warning" and ev["message"] == cond["message"]


def test_the_gate_state_survives_an_operator_restart(world: tuple[Cluster, Operator], tmp_path: Path) -> None:
    cluster, op = world
    log = tmp_path / "splitter-0.jsonl"
    log.touch()
    cr = _experiment(log)
    cr["spec"]["traffic"]["steps"] = [50, 100]
    cr["spec"]["analysisIntervalSeconds"] = 2
    cluster.request("POST", EXPS, cr)
    op.start()
    wait_for("the first step", lambda: [a["weight"] for a in _split(cluster)["arms"]] == [50, 50], op)
    write_users(log, [50, 50], users=600, ctr=0.1, fallback=0.0, seed=1)  # no lift: the gate keeps looking
    wait_for("three looks", lambda: (_status(cluster).get("gate") or {}).get("looks", 0) >= 3, op)
    op.stop()
    before = _status(cluster)["gate"]
    write_users(log, [50, 50], users=600, ctr=0.1, fallback=0.0, seed=2)
    op.start()  # a new operator process: all it knows is the CR's status
    wait_for("a look after the restart",
             lambda: (_status(cluster).get("gate") or {}).get("looks", 0) > before["looks"], op)
    after = _status(cluster)["gate"]
    assert after["looks"] == before["looks"] + 1 and after["since"] == before["since"]
    b, a = before["tests"]["challenger"]["ctr"], after["tests"]["challenger"]["ctr"]
    assert a["tau2"] == b["tau2"], "the mixing variance must stay fixed for the whole test"
    assert a["pMin"] <= b["pMin"] and a["nChampion"] == b["nChampion"] + 300
    assert _status(cluster)["phase"] == "Progressing"
