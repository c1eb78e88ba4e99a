"""The operator end to end over the Kubernetes API protocol: ``kopf run`` (a real subprocess) against
kmock on loopback (with the adapter of ``kmock_adapter.py``) and a STUB of the KFP REST API.

* DistillationRun: one submission reaches the KFP stub → the status follows the run (stages as
  conditions) → the operator is restarted mid-run → no second submission, the status still follows,
  and the final metrics come from the report the run published to S3 (moto's server on loopback);
  a CR with a bad spec gets ``phase: Invalid`` naming the field.
* RelevanceExperiment: the splitter ConfigMap's weights step 10 → 50 as the gate (the real
  ``distillery.abtest.gate`` on a synthetic event log) says promote, then the challenger is promoted;
  without metrics it waits (a temporary error) and, deleted mid-rollout, hands the traffic back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.k8s.kfp_stub import KfpStub
from tests.k8s.kmock_adapter import Cluster
from tests.k8s.operator_proc import S3_ENV, Operator, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
NS = "relevance-distillery"
RUNS = f"/apis/distillery.relevance.dev/v1alpha1/namespaces/{NS}/distillationruns"
EXPS = f"/apis/distillery.relevance.dev/v1alpha1/namespaces/{NS}/relevanceexperiments"
CMS = f"/api/v1/namespaces/{NS}/configmaps"


@pytest.fixture()
def s3(s3_server: str) -> str:
    """An S3 API on loopback (moto's server, tests/conftest.py) for the reports a finished run publishes."""
    return s3_server


@pytest.fixture()
def world(tmp_path: Path, s3: str) -> Iterator[tuple[Cluster, KfpStub, Operator]]:
    with Cluster() as cluster, KfpStub() as kfp:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(cluster.kubeconfig()))
        env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL_S3": s3, "KUBECONFIG": str(kubeconfig), "KFP_HOST": kfp.url,
               "DISTILLERY_POLL_SECONDS": "0.5", "DISTILLERY_TICK_SECONDS": "0.3", "DISTILLERY_RETRY_SECONDS": "1",
               "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "KF_PIPELINES_SA_TOKEN_PATH": str(tmp_path / "no-token")}
        op = Operator(env, tmp_path / "operator.log")
        try:
            yield cluster, kfp, op
        finally:
            op.stop()


def publish_report(endpoint: str, uri: str, doc: dict[str, Any]) -> None:
    """Put a report's metrics.json where the pipeline's publish step would."""
    import boto3

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/report/metrics.json", Body=json.dumps(doc).encode())


def sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests" / "samples" / name).read_text())


def test_distillation_run_is_submitted_once_and_followed(world: tuple[Cluster, KfpStub, Operator], s3: str) -> None:
    cluster, kfp, op = world
    cr = sample("distillationrun-minimal.yaml")
    cluster.request("POST", RUNS, cr)
    # kmock, like an API server without the CRD's validation, stores a bad spec: the operator rejects it.
    cluster.request("POST", RUNS, sample("invalid/drun-shards-zero.yaml"))
    # The operator's default serving repository (an empty bucket: no champion yet) is read before submitting.
    import boto3

    boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="distillery-models")
    op.start()

    def status() -> dict[str, Any]:
        return (cluster.request("GET", f"{RUNS}/synthetic-demo") or {}).get("status") or {}

    run_id = wait_for("status.runId", lambda: status().get("runId"), op, timeout=90)
    (run,) = kfp.submissions()
    assert run["run_id"] == run_id and run["display_name"] == status()["runName"]
    # What reached KFP is the compiled end-to-end pipeline with this CR's arguments.
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "relevance-distillery"
    params = run["runtime_config"]["parameters"]
    assert params["data_spec"] == "synthetic:2000,seed=7"
    assert params["shards"] == 4 and params["output_uri"] == "s3://distillery-runs/synthetic-demo"  # CRD defaults
    assert json.loads(params["config_json"])["profile"] == "demo"
    assert run["runtime_config"]["pipeline_root"] == "s3://distillery-runs/synthetic-demo/kfp"
    # The deploy step gets its target; with no champion the new student is compared with none.
    assert (params["serving_uri"], params["champion"]) == ("s3://distillery-models/triton", "")
    assert params["run_label"] == status()["runName"]

    kfp.set_run(run_id, "RUNNING", {"Prepare data: split by query": "SUCCEEDED", "Distillation": "RUNNING"})
    wait_for("phase Running", lambda: status().get("phase") == "Running", op)
    conds = {c["type"]: c for c in status()["conditions"]}
    assert conds["StudentDistilled"]["status"] == "Unknown" and conds["Succeeded"]["status"] == "Unknown"
    assert conds["Submitted"]["status"] == "True"

    op.stop()  # the operator restarts while the run is still running
    op.start()
    publish_report(s3, "s3://distillery-runs/synthetic-demo",
                   {"stages": {"student": {"macro_f1": 0.61, "accuracy": 0.7}, "champion": {"macro_f1": 0.55}}})
    kfp.set_run(run_id, "SUCCEEDED", {"Prepare data: split by query": "SUCCEEDED", "Distillation": "SUCCEEDED",
                                      "Evaluate student on held-out queries": "SUCCEEDED"})
    wait_for("phase Succeeded", lambda: status().get("phase") == "Succeeded", op)
    conds = {c["type"]: c for c in status()["conditions"]}
    assert conds["Succeeded"]["status"] == "True"
    assert conds["StudentDistilled"]["status"] == "True" and conds["Evaluated"]["status"] == "True"
    assert conds["MetricsReported"]["status"] == "True"
    assert status()["published"]["note"].startswith("nothing published"), status()["published"]
    assert status()["metrics"] == {"macro_f1": 0.61, "student.macro_f1": 0.61, "student.accuracy": 0.7,
                                   "champion.macro_f1": 0.55}
    time.sleep(1.0)  # give a wrongly non-idempotent operator time to resubmit
    assert len(kfp.submissions()) == 1, "the restarted operator submitted a second run"
    bad = cluster.request("GET", f"{RUNS}/bad-shards")["status"]
    assert bad["phase"] == "Invalid" and bad["message"].startswith("spec.annotation.shards:"), bad
    assert [c for c in kfp.calls if c[0] == "POST" and c[1].startswith("/apis/v2beta1/runs")] != []


def write_batch(path: Path, weights: list[float], users: int, lift: float, seed: int) -> None:
    """A splitter event log batch, users assigned in proportion to ``weights`` (so no sample-ratio
    mismatch): impressions of 10 items, clicks with CTR 0.10 (champion) and 0.10 + lift (challenger)."""
    rng = np.random.default_rng(seed)
    now = time.time()
    n_challenger = round(users * weights[1] / 100)
    with path.open("a") as f:
        for u in range(users):
            arm = "challenger" if u < n_challenger else "champion"
            uid = f"s{seed}-u{u}"
            # One exposure record as the splitter writes it, then the client's click events.
            f.write(json.dumps({"ts": now, "request_id": uid, "user_id": uid, "arm": arm, "served_by": arm,
                                "fallback": False, "items": [f"i{k}" for k in range(10)], "latency_ms": 5.0}) + "\n")
            p = 0.10 + (lift if arm == "challenger" else 0.0)
            for _ in range(int(rng.binomial(10, p))):
                f.write(json.dumps({"ts": now, "user_id": uid, "arm": arm, "event": "click", "item_id": "i0"}) + "\n")


def test_relevance_experiment_steps_traffic_and_promotes(world: tuple[Cluster, KfpStub, Operator],
                                                         tmp_path: Path, s3: str) -> None:
    from tests.k8s.test_experiment_e2e import two_version_repository

    cluster, _, op = world
    log = tmp_path / "events.jsonl"
    log.touch()
    repo = two_version_repository(tmp_path, s3)  # the sample's spec.serving.repository, on moto
    cr = sample("relevanceexperiment.yaml")
    cr["spec"].update(analysisIntervalSeconds=1, metricsSource={"uri": str(log)})
    cr["spec"]["gate"].update(minUsers=100, guardrailMetrics=[], maxAnalysesPerStep=0)
    cluster.request("POST", EXPS, cr)
    op.start()

    def weights() -> list[float]:
        cm = cluster.request("GET", f"{CMS}/distillery-splitter") or {}
        split = json.loads((cm.get("data") or {}).get("split.json", "null") or "null") or {"arms": []}
        return [a["weight"] for a in split["arms"]]

    def status() -> dict[str, Any]:
        return (cluster.request("GET", f"{EXPS}/relevance-v2") or {}).get("status") or {}

    seen: list[list[float]] = []

    def record() -> bool:
        w = weights()
        if w and (not seen or seen[-1] != w):
            seen.append(w)
            if w[1] > 0:  # users arrive under the new weights (after the step started)
                write_batch(log, w, users=1500 if w[1] < 50 else 400, lift=0.15, seed=len(seen))
        return status().get("phase") == "Promoted"

    wait_for("the challenger's promotion", record, op, timeout=90)
    assert seen[:2] == [[90, 10], [50, 50]], seen
    assert seen[-1] == [100, 0], seen
    st = status()
    assert st["decision"] == "promote"
    assert st["champion"] == {"model": "relevance", "version": 2}
    assert st["latestAnalysis"]["decision"] == "promote" and st["latestAnalysis"]["lift"] > 0
    split = json.loads(cluster.request("GET", f"{CMS}/distillery-splitter")["data"]["split.json"])
    assert split["arms"][0] == {"name": "champion", "model": "relevance_v2", "version": "", "weight": 100}
    assert repo.champion() == 2, "promotion must make version 2 the repository's champion too"
    events = cluster.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    reasons = [e.get("reason") for e in events if e.get("involvedObject", {}).get("name") == "relevance-v2"]
    assert "TrafficStepped" in reasons and "Promoted" in reasons, reasons


def test_an_experiment_waits_for_its_metrics_and_deletion_restores_the_champion(
        world: tuple[Cluster, KfpStub, Operator], tmp_path: Path) -> None:
    cluster, _, op = world
    cr = sample("relevanceexperiment.yaml")
    cr["spec"].update(analysisIntervalSeconds=1, metricsSource={"uri": str(tmp_path / "not-yet")})
    cluster.request("POST", EXPS, cr)
    op.start()

    def status() -> dict[str, Any]:
        return (cluster.request("GET", f"{EXPS}/relevance-v2") or {}).get("status") or {}

    def weights() -> list[float]:
        cm = cluster.request("GET", f"{CMS}/distillery-splitter") or {}
        return [a["weight"] for a in json.loads(cm.get("data", {}).get("split.json", '{"arms": []}'))["arms"]]

    # No metrics yet: a temporary condition, retried; the first step stays in place.
    wait_for("the waiting message", lambda: "does not exist" in status().get("message", ""), op)
    assert status()["phase"] == "Progressing" and weights() == [90, 10]
    cluster.request("DELETE", f"{EXPS}/relevance-v2")
    wait_for("all traffic back on the champion", lambda: weights() == [100, 0], op)
    wait_for("the experiment to be gone", lambda: cluster.request("GET", f"{EXPS}/relevance-v2") is None, op)
