"""Must-show 1 and 4 of the cluster path: ``kubectl apply`` a DistillationRun (tiny profile, data as
``parquet:s3://…``) → the operator submits the end-to-end pipeline → it really runs (KFP's local runner, with the
operator's spec and arguments) → ``Succeeded``; the serving repository in S3 holds the new version and the real
Triton, reading that repository from S3, serves it.  The operator is killed mid-run and restarted: it finds the
run it submitted (no second KFP run) and follows it to the end.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import numpy as np
import pytest

from distillery.data.synthetic import generate
from tests.cluster.conftest import RUNS, World
from tests.k8s.operator_proc import S3_ENV, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# Buckets of this test alone: moto's state lives for the session, and tests/k8s uses the README's bucket names.
TAG = uuid.uuid4().hex[:8]
DATA = f"s3://data-{TAG}/tiny/pairs.parquet"
MODELS_BUCKET = f"models-{TAG}"
MODELS = f"s3://{MODELS_BUCKET}/triton"
RUNS_BUCKET = f"runs-{TAG}"
TINY_OVERRIDES = {
    "export.int8": "false", "annotate.max_pairs": "16", "teacher.max_new_tokens": "8", "teacher.max_seed_pairs": "8",
    "teacher.dapt.max_steps": "2", "teacher.sft.max_steps": "2", "teacher.reward.max_steps": "2",
    "teacher.dpo.max_steps": "2",
}


def s3_client(world: World) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=world.s3, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def put_parquet(world: World, uri: str, n: int) -> None:
    import pandas as pd

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = s3_client(world)
    s3.create_bucket(Bucket=bucket)
    rows = [{k: v for k, v in p.to_json().items() if k not in ("meta", "label_source")} for p in generate(n, seed=3)]
    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())


def run_cr(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "distillery.relevance.dev/v1alpha1", "kind": "DistillationRun",
        "metadata": {"name": name, "namespace": "relevance-distillery"},
        "spec": {"data": {"source": f"parquet:{DATA}"}, "profile": "tiny", "overrides": TINY_OVERRIDES,
                 "annotation": {"shards": 2},
                 "output": {"uri": f"s3://{RUNS_BUCKET}/{name}"},
                 "serving": {"repository": MODELS}},
    }


def test_distillation_run_succeeds_publishes_and_serves(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    put_parquet(world, DATA, 480)
    s3_client(world).create_bucket(Bucket=RUNS_BUCKET)
    s3_client(world).create_bucket(Bucket=MODELS_BUCKET)
    world.cluster.request("POST", RUNS, run_cr("tiny-s3"))
    world.operator.start()

    def status() -> dict[str, Any]:
        return (world.cluster.request("GET", f"{RUNS}/tiny-s3") or {}).get("status") or {}

    run_id = wait_for("status.runId", lambda: status().get("runId"), world.operator, timeout=120)
    # Killed while the pipeline runs, then restarted: it must find its run, not submit a second one.
    wait_for("a running task", lambda: world.kfp.runs[run_id].get("run_details"), world.operator, timeout=300)
    world.operator.stop()
    time.sleep(1)
    world.operator.start()
    final = wait_for("a final phase", lambda: status().get("phase") in ("Succeeded", "Failed") and status(),
                     world.operator, timeout=840)
    assert len(world.kfp.submissions()) == 1, "the restarted operator submitted a second run"
    assert final["phase"] == "Succeeded", f"{final}\n--- run log ---\n{world.kfp.log_tail(run_id)}"
    # What ran is what the operator submitted, with its arguments.
    params = world.kfp.runs[run_id]["runtime_config"]["parameters"]
    assert params["data_spec"] == f"parquet:{DATA}" and json.loads(params["config_json"])["profile"] == "tiny"
    keys = [o["Key"] for o in s3_client(world).list_objects_v2(Bucket=MODELS_BUCKET).get("Contents", [])]
    assert any(k.startswith("triton/relevance/1/") for k in keys), keys
    serve_from_s3(world, monkeypatch)


def serve_from_s3(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Triton loads the published repository straight from the S3 server and answers; its credentials
    come from the environment, as the cluster's Triton gets them from the distillery-s3 Secret."""
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    from distillery.serving.client import RelevanceClient
    from distillery.serving.server import TritonServer

    host_port = world.s3.removeprefix("http://")
    repo = f"s3://http://{host_port}/{MODELS_BUCKET}/triton"
    with TritonServer(repo) as server, RelevanceClient(server.http_url) as client:
        scores = np.asarray(client.score(["red running shoes"], ["red running shoes | acme"], model="relevance"))
    assert scores.shape[0] == 1 and np.isfinite(scores).all()
