"""The teacher's training steps as Kubeflow jobs (``distillery.teacher.jobs``).

* The rendered TrainJob (Kubeflow Trainer v2.3.0) and PyTorchJob (Training Operator v1.9.0) for 1×1 and 2×4
  validate against the real CRD schemas vendored in ``tests/k8s/schemas`` (README there), with no field the
  schema does not know (what ``kubectl --validate=strict`` would refuse) and TrainJob's name rule.
* Created and awaited over the Kubernetes API protocol (kmock on loopback, ``kmock_adapter.py``) through the real
  ``kubernetes`` client: the whole :func:`run_cluster_job` with S3 staging (moto's server on loopback), where a
  FAKE NODE stands in for the job's pods (no cluster runs torchrun here): it fetches the staged inputs and
  hands a model back through the pod side's own functions, then sets the job's status as the operator would;
  a failed job is a one-line error naming the job and its condition; a job past its timeout is deleted.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml

from distillery.config import Config, load_config
from distillery.teacher import jobs, jobs_pod
from distillery.teacher.jobs_api import JobError, await_job, create_job
from tests.k8s import kmock_adapter
from tests.k8s.kmock_adapter import Cluster

SCHEMAS = Path(__file__).parent / "schemas"
NS = "relevance-distillery"
CRD_FILES = {"trainjob": "trainer.kubeflow.org_trainjobs.yaml.gz", "pytorchjob": "kubeflow.org_pytorchjobs.yaml.gz"}


def crd_schema(launcher: str) -> dict[str, Any]:
    crd = yaml.safe_load(gzip.decompress((SCHEMAS / CRD_FILES[launcher]).read_bytes()))
    group, version, plural, kind = jobs.KINDS[launcher]
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"], crd["spec"]["names"]["kind"]) == (group, plural, kind)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return dict(served["schema"]["openAPIV3Schema"])


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the structural schema does not declare (the API server would prune them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict) and "properties" in schema:
        out = []
        for key, value in obj.items():
            if key in schema["properties"]:
                out += unknown_fields(value, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties"):
                out.append(f"{path}.{key}")
        return out
    if isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [p for k, v in obj.items() for p in unknown_fields(v, schema["additionalProperties"], f"{path}.{k}")]
    if isinstance(obj, list) and "items" in schema:
        return [p for i, v in enumerate(obj) for p in unknown_fields(v, schema["items"], f"{path}[{i}]")]
    return []


def config(launcher: str, nodes: int = 1, procs: int = 1, **launch: Any) -> Config:
    return load_config("tiny", overrides={"teacher": {"launch": {"launcher": launcher, "num_nodes": nodes,
                                                                 "procs_per_node": procs, **launch}}})


def render(launcher: str, nodes: int, procs: int, **launch: Any) -> dict[str, Any]:
    cfg = config(launcher, nodes, procs, **launch)
    staging = "s3://distillery-runs/teacher-jobs/x"
    return jobs.render_job("sft", cfg, name=jobs.job_name("sft"), namespace=NS, staging=staging,
                           inputs={"data": f"{staging}/inputs/data", "base": "s3://models/teacher/sft"})


def pods(manifest: dict[str, Any]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(replicas, pod spec, container) per replica kind; a TrainJob's pod is its trainer plus its runtime patch."""
    if manifest["kind"] == "PyTorchJob":
        return [(r["replicas"], r["template"]["spec"], r["template"]["spec"]["containers"][0])
                for r in manifest["spec"]["pytorchReplicaSpecs"].values()]
    trainer = manifest["spec"]["trainer"]
    (patch,) = manifest["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = rjob["template"]["spec"]["template"]["spec"]
    return [(trainer["numNodes"], pod, {**pod["containers"][0], **trainer, "resources": trainer["resourcesPerNode"]})]


@pytest.mark.parametrize("launcher", ["trainjob", "pytorchjob"])
@pytest.mark.parametrize(("nodes", "procs"), [(1, 1), (2, 4)])
def test_rendered_job_validates_against_the_real_crd(launcher: str, nodes: int, procs: int) -> None:
    manifest = render(launcher, nodes, procs)
    schema = crd_schema(launcher)
    jsonschema.validate(manifest, schema)
    assert unknown_fields(manifest, schema) == []
    name = manifest["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63  # TrainJob's CEL rules

    replicas = pods(manifest)
    assert sum(r for r, _, _ in replicas) == nodes
    if launcher == "pytorchjob":
        assert manifest["spec"]["nprocPerNode"] == str(procs)
        assert [r for r, _, _ in replicas] == ([1, nodes - 1] if nodes > 1 else [1])
    else:
        assert manifest["spec"]["trainer"]["numProcPerNode"] == procs
        assert manifest["spec"]["runtimeRef"]["name"] == "torch-distributed"
    for _, pod, container in replicas:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(procs)
        assert pod["tolerations"] == [jobs.GPU_TOLERATION]
        args = jobs_pod.parse_args(container["args"])
        assert (args.step, args.nnodes, args.nproc_per_node) == ("sft", nodes, procs)
        assert args.input == ["data=s3://distillery-runs/teacher-jobs/x/inputs/data", "base=s3://models/teacher/sft"]


def test_cpu_job_asks_for_no_gpu_and_carries_the_config() -> None:
    manifest = render("pytorchjob", 1, 2, gpu=False, memory_per_node="12Gi")
    jsonschema.validate(manifest, crd_schema("pytorchjob"))
    ((_, pod, container),) = pods(manifest)
    assert "nvidia.com/gpu" not in container["resources"]["limits"] and "tolerations" not in pod
    assert container["resources"]["limits"]["memory"] == "12Gi"
    args = jobs_pod.parse_args(container["args"])
    cfg = config("pytorchjob", 1, 2, gpu=False, memory_per_node="12Gi")
    import json

    values = json.loads(args.config_json)
    assert load_config(values.pop("profile"), overrides=values).to_dict() == cfg.to_dict()


def test_pod_runs_torchrun_on_its_node() -> None:
    manifest = render("trainjob", 2, 4)
    ((_, _, container),) = pods(manifest)
    args = jobs_pod.parse_args(container["args"])
    env = {"PET_NODE_RANK": "1", "PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29400"}
    local = {"data": "/scratch/inputs/data", "base": "/scratch/inputs/base"}
    cmd = jobs_pod.torchrun_command(args, local, Path("/scratch/config.json"), Path("/scratch/output"), env)
    flags = dict(zip(cmd[3:13:2], cmd[4:14:2], strict=True))
    assert flags == {"--nnodes": "2", "--nproc-per-node": "4", "--node-rank": "1",
                     "--master-addr": "job-node-0-0.job", "--master-port": "29400"}
    tail = cmd[13:]
    assert tail[tail.index("--step") + 1] == "sft" and tail[tail.index("--base") + 1] == "/scratch/inputs/base"
    assert tail[tail.index("--model-dir") + 1] == "/scratch/output/model"


def test_pipeline_steps_may_manage_the_jobs_and_nothing_else() -> None:
    from tests.k8s.conftest import find, kustomize

    docs = [d for d in yaml.safe_load_all(kustomize("gpu")) if d]
    role = find(docs, "Role", "distillery-teacher-jobs")
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    verbs = {"create", "get", "list", "watch", "delete"}
    assert granted == {(g, plural): verbs for g, _, plural, _ in jobs.KINDS.values()}
    binding = find(docs, "RoleBinding", "distillery-teacher-jobs")
    assert binding["metadata"]["namespace"] == NS and binding["roleRef"]["name"] == "distillery-teacher-jobs"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]


# --- create and await over the Kubernetes API protocol ---------------------------------------------------------


@pytest.fixture()
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    extra = tuple((f"{g}/{v}/{plural}", kind, True, ["status"]) for g, v, plural, kind in jobs.KINDS.values())
    monkeypatch.setattr(kmock_adapter, "RESOURCES", kmock_adapter.RESOURCES + extra)
    with Cluster() as c:
        yield c


@pytest.fixture()
def api(cluster: Cluster) -> Any:
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config_dict(cluster.kubeconfig()))


def job_path(manifest: dict[str, Any]) -> str:
    group, version, plural, _ = next(k for k in jobs.KINDS.values() if k[3] == manifest["kind"])
    return f"/apis/{group}/{version}/namespaces/{NS}/{plural}/{manifest['metadata']['name']}"


def set_conditions(cluster: Cluster, manifest: dict[str, Any], *conds: tuple[str, str, str]) -> None:
    status = {"conditions": [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conds]}
    cluster.request("PATCH", job_path(manifest), {"status": status}, content_type="application/merge-patch+json")


def wait_for_job(cluster: Cluster, kind: str) -> dict[str, Any]:
    """The one job of ``kind`` the step created (the step creates it only after staging its inputs)."""
    group, version, plural, _ = next(k for k in jobs.KINDS.values() if k[3] == kind)
    for _ in range(600):
        items = cluster.request("GET", f"/apis/{group}/{version}/namespaces/{NS}/{plural}")["items"]
        if items:
            (job,) = items
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"no {kind} was created")


def fake_node(job: dict[str, Any], scratch: Path) -> None:
    """FAKE stand-in for the job's pods: stage in and out through jobs_pod; the 'training' writes a file."""
    ((_, _, container),) = pods(job)[:1]
    args = jobs_pod.parse_args(container["args"])
    local = jobs_pod.stage_in(args.input, scratch)
    assert local["base"] == str(scratch / "inputs" / "base") and (scratch / "inputs" / "base" / "config.json").exists()
    rows = (Path(local["data"]) / "seed.jsonl").read_text()
    out = scratch / "output"
    (out / "model").mkdir(parents=True)
    (out / "training").mkdir()
    (out / "model" / "weights.txt").write_text(f"trained on {len(rows.splitlines())} seed rows")
    (out / "training" / "metrics.json").write_text('{"train_loss": 0.5, "step": "sft"}')
    jobs_pod.stage_out(out, args.staging)


@pytest.mark.parametrize(("launcher", "done", "source"), [("pytorchjob", "Succeeded", "directory"),
                                                      ("trainjob", "Complete", "directory"),
                                                      ("pytorchjob", "Succeeded", "local file spec")])
def test_teacher_step_stages_creates_awaits_and_returns_the_model(
        launcher: str, done: str, source: str, cluster: Cluster, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's own entry, ``stages.teacher.train``, with the step's kubeconfig (not in a cluster here); the
    data a prepared directory or a dataset loaded from a local file (its split is staged, not the spec text)."""
    from kubernetes.config import kube_config

    from distillery.data import load_pairs, write_jsonl
    from distillery.stages.data import Dataset
    from distillery.stages.teacher import train

    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(cluster.kubeconfig()))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    data: Any = tmp_path / "data"
    base = tmp_path / "base"
    data.mkdir()
    base.mkdir()
    (data / "seed.jsonl").write_text('{"q": 1}\n{"q": 2}\n')
    (base / "config.json").write_text("{}")
    cfg = config(launcher, 2, 4, namespace=NS, staging_uri=f"s3://{bucket}/teacher-jobs", timeout_s=120)
    rows = 2
    if source == "local file spec":
        write_jsonl(load_pairs("synthetic:80"), tmp_path / "pairs.jsonl")
        data = Dataset.from_spec(f"jsonl:{tmp_path / 'pairs.jsonl'}", cfg)[0]
        rows = len(data.splits.seed)
    result: dict[str, Any] = {}

    def step() -> None:
        try:
            result["metrics"] = train("sft", cfg, data, tmp_path / "model", tmp_path / "training", base=str(base))
        except Exception as exc:  # handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=step)
    thread.start()
    job = wait_for_job(cluster, jobs.KINDS[launcher][3])
    set_conditions(cluster, job, ("Created", "Created", "job created"))
    fake_node(job, tmp_path / "node0")
    set_conditions(cluster, job, ("Created", "Created", "job created"), (done, "Done", "all nodes finished"))
    thread.join(60)
    assert "error" not in result, result.get("error")
    assert result["metrics"]["train_loss"] == 0.5
    assert result["metrics"]["job"] == f"{jobs.KINDS[launcher][3]}/{job['metadata']['name']}"
    assert (tmp_path / "model" / "weights.txt").read_text() == f"trained on {rows} seed rows"
    assert (tmp_path / "training" / "metrics.json").exists() and not (tmp_path / "model" / "metrics.json").exists()
    from distillery.storage import MANIFEST, client

    for part in ("inputs/data", "inputs/base", "output/model", "output/training"):  # every transfer is checksummed
        client().head_object(Bucket=bucket, Key=f"teacher-jobs/{job['metadata']['name']}/{part}/{MANIFEST}")


@pytest.mark.parametrize("launcher", ["trainjob", "pytorchjob"])
def test_failed_job_is_a_one_line_error_naming_it(launcher: str, cluster: Cluster, api: Any) -> None:
    manifest = render(launcher, 1, 1, namespace=NS)
    create_job(api, manifest)
    set_conditions(cluster, manifest, ("Created", "Created", "ok"),
                   ("Failed", "BackoffLimitExceeded", "pod node-0 exited with 1:\nCUDA out of memory"))
    with pytest.raises(JobError) as err:
        await_job(api, manifest, timeout_s=60, poll_s=0.05)
    msg = str(err.value)
    assert "\n" not in msg and manifest["metadata"]["name"] in msg
    assert "BackoffLimitExceeded" in msg and "CUDA out of memory" in msg


def test_job_past_its_timeout_is_deleted(cluster: Cluster, api: Any) -> None:
    manifest = render("pytorchjob", 1, 1, namespace=NS)
    create_job(api, manifest)
    set_conditions(cluster, manifest, ("Running", "Running", "training"))
    with pytest.raises(JobError, match=r"did not finish within teacher\.launch\.timeout_s=0\.3; deleted it"):
        await_job(api, manifest, timeout_s=0.3, poll_s=0.05)
    assert cluster.request("GET", job_path(manifest)) is None


def test_stopped_step_deletes_its_job(cluster: Cluster, api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled KFP run SIGTERMs the step's pod: SIGTERM becomes SystemExit, and the job goes with the step."""
    import signal

    from distillery.teacher import jobs_api

    with pytest.raises(SystemExit) as stopped, jobs_api._sigterm_raises():
        signal.raise_signal(signal.SIGTERM)
    assert stopped.value.code == 128 + signal.SIGTERM
    manifest = render("trainjob", 1, 1, namespace=NS)
    create_job(api, manifest)

    def sigterm_during_the_wait(seconds: float) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    # Only this module's clock: the emulated API server keeps the real one.
    monkeypatch.setattr(jobs_api, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sigterm_during_the_wait))
    with pytest.raises(SystemExit):
        await_job(api, manifest, timeout_s=60, poll_s=0.05)
    assert cluster.request("GET", job_path(manifest)) is None


def test_job_deleted_by_someone_else_is_an_error(cluster: Cluster, api: Any) -> None:
    manifest = render("trainjob", 1, 1, namespace=NS)
    create_job(api, manifest)
    cluster.request("DELETE", job_path(manifest))
    with pytest.raises(JobError, match="was deleted before it finished"):
        await_job(api, manifest, timeout_s=60, poll_s=0.05)


def test_inputs_are_staged_or_passed_on(bucket: str, tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    staging = f"s3://{bucket}/teacher-jobs/j"
    inputs = jobs.stage_inputs("dpo", staging, {"data": "synthetic:300", "base": str(tmp_path / "base"),
                                                "reward": f"s3://{bucket}/models/reward"})
    assert inputs == {"data": "synthetic:300", "base": f"{staging}/inputs/base", "reward": f"s3://{bucket}/models/reward"}
    from distillery.storage import fetch

    assert (fetch(inputs["base"], tmp_path / "cache") / "config.json").read_text() == "{}"


@pytest.mark.slow
def test_pod_trains_the_tiny_teacher_with_torchrun_and_hands_it_back(bucket: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The pod side for real: jobs_pod.main → torchrun (1 node × 1 process, gloo) → the teacher worker → S3."""
    import json

    from distillery.storage import fetch

    cfg = config("pytorchjob", 1, 1, gpu=False)
    staging = f"s3://{bucket}/teacher-jobs/j"
    manifest = jobs.render_job("dapt", cfg, name="j", namespace=NS, staging=staging, inputs={"data": "synthetic:200"})
    ((_, _, container),) = pods(manifest)
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    assert jobs_pod.main(container["args"]) == 0
    model = fetch(f"{staging}/output/model", tmp_path / "got")
    training = fetch(f"{staging}/output/training", tmp_path / "got")
    metrics = json.loads((training / "metrics.json").read_text())
    assert (metrics["step"], metrics["processes"]) == ("dapt", 1) and metrics["perplexity_after"] > 0
    assert (model / "teacher.json").is_file()  # a teacher directory that the next step's --base accepts


@pytest.mark.parametrize(("field", "value", "message"), [
    ("memory_per_node", "lots", "teacher.launch.memory_per_node='lots': not a Kubernetes quantity"),
    ("staging_uri", "/tmp/stage", "teacher.launch.staging_uri='/tmp/stage': a cluster job needs an s3:// URI"),
])
def test_bad_cluster_settings_name_the_field(field: str, value: str, message: str) -> None:
    from distillery.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        config("trainjob", 1, 1, **{field: value})
