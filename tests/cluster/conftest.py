"""The cluster-in-a-box: the README's cluster story on one machine, with the real parts that run here.

* the Kubernetes API protocol: kmock on loopback with the project's CRDs (``tests/k8s/kmock_adapter.py``);
* the operator: ``kopf run -m pipelines.operator`` as its own process, with its real ``KfpBackend``;
* Kubeflow Pipelines: ``kfp.Client``'s REST calls answered on loopback, every submitted run executed by KFP's
  local runner with the spec and arguments the operator sent (``kfp_local.py``; the API server is the fake);
* S3: moto's server (data, run artifacts, the Triton model repository);
* Triton: the real ``tritonserver`` reading the model repository straight from that S3;
* the A/B splitter as its own process, with simulated users.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.cluster.kfp_local import KfpLocal
from tests.k8s.kmock_adapter import Cluster
from tests.k8s.operator_proc import S3_ENV, Operator

NS = "relevance-distillery"
RUNS = f"/apis/distillery.relevance.dev/v1alpha1/namespaces/{NS}/distillationruns"
EXPS = f"/apis/distillery.relevance.dev/v1alpha1/namespaces/{NS}/relevanceexperiments"
CMS = f"/api/v1/namespaces/{NS}/configmaps"


@dataclass
class World:
    cluster: Cluster
    kfp: KfpLocal
    operator: Operator
    s3: str
    env: dict[str, str]
    tmp: Path


@pytest.fixture()
def world(tmp_path: Path, s3_server: str) -> Iterator[World]:
    """One cluster-in-a-box. moto keeps its buckets in the process, for the whole session (a second server in this
    process would share them): each test names its own buckets."""
    s3_env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": s3_server, "AWS_ENDPOINT_URL": s3_server}
    run_env = {**s3_env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with Cluster() as cluster, KfpLocal(tmp_path / "kfp", run_env) as kfp:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(cluster.kubeconfig()))
        env = {**os.environ, **s3_env, "KUBECONFIG": str(kubeconfig), "KFP_HOST": kfp.url,
               "DISTILLERY_POLL_SECONDS": "1", "DISTILLERY_TICK_SECONDS": "0.5", "DISTILLERY_RETRY_SECONDS": "1",
               "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "KF_PIPELINES_SA_TOKEN_PATH": str(tmp_path / "no-token")}
        op = Operator(env, tmp_path / "operator.log")
        try:
            yield World(cluster, kfp, op, s3_server, env, tmp_path)
        finally:
            op.stop()
