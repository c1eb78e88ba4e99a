"""Golden files of the compiled pipelines, and the fields that matter on a cluster.

Regenerate after an intended change: ``DISTILLERY_UPDATE_GOLDEN=1 pytest tests/pipelines/test_compile.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from distillery.images import TRAINER_IMAGE, image
from tests.pipelines import ir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "pipelines"
GPU_COMPONENTS = {"finetune-student", "dapt", "sft", "reward-model", "dpo", "evaluate-teacher", "annotate-shard",
                  "distill-student", "build-tensorrt-plan"}
SERVING_IMAGE_EXECUTORS = {"exec-build-tensorrt-plan"}
"""Built in the serving image: a TensorRT plan loads only in the TensorRT that built it."""
S3_COMPONENTS = {"score-champion", "publish-artifacts", "deploy-model-repository", "annotate-shard", "prepare-data"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pipelines import compile_all

    out = tmp_path_factory.mktemp("compiled")
    return {p.stem: p for p in compile_all(out)}


def test_compiled_yaml_matches_golden_files(compiled: dict[str, Path]) -> None:
    if os.environ.get("DISTILLERY_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for f in GOLDEN.glob("*.yaml"):
            f.unlink()
        for name, path in compiled.items():
            (GOLDEN / f"{name}.yaml").write_text(ir.without_sdk_version(path.read_text()), encoding="utf-8")
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(compiled), "a pipeline was added or removed"
    for name, path in compiled.items():
        got = ir.without_sdk_version(path.read_text())
        want = (GOLDEN / f"{name}.yaml").read_text(encoding="utf-8")
        assert got == want, f"{name}.yaml differs from tests/golden/pipelines (DISTILLERY_UPDATE_GOLDEN=1 to accept)"


def test_every_task_has_a_display_name_and_explicit_caching(compiled: dict[str, Path]) -> None:
    for path in compiled.values():
        spec, _ = ir.load(path)
        for dag, name, task in ir.tasks(spec):
            assert task["taskInfo"]["name"], (path.name, dag, name)
            if "triggerPolicy" in task or "parameterIterator" in task or "artifactIterator" in task:
                continue  # control-flow groups carry a name, not a cache setting
            assert task["taskInfo"]["name"] != name, f"{path.name}: task {name} has no display name"
            assert "cachingOptions" in task, f"{path.name}: task {name} leaves caching implicit"


def test_images_come_from_the_one_constant_and_nothing_is_installed(compiled: dict[str, Path]) -> None:
    for path in compiled.values():
        spec, _ = ir.load(path)
        for label, ex in spec["deploymentSpec"]["executors"].items():
            want = image("serving") if label in SERVING_IMAGE_EXECUTORS else TRAINER_IMAGE
            assert ex["container"]["image"] == want, (path.name, label)
            assert "pip install" not in " ".join(ex["container"]["command"]), (path.name, label)


def test_gpu_steps_request_gpus_on_the_gpu_pool(compiled: dict[str, Path]) -> None:
    spec, platform = ir.load(compiled["end-to-end"])
    gpu_execs = {f"exec-{c}" for c in GPU_COMPONENTS} & set(spec["deploymentSpec"]["executors"])
    assert gpu_execs == {f"exec-{c}" for c in GPU_COMPONENTS}  # every training/generation step is wired
    for label, ex in spec["deploymentSpec"]["executors"].items():
        acc = ex["container"].get("resources", {}).get("accelerator")
        if label in gpu_execs:
            assert acc is not None and acc["resourceType"] == "nvidia.com/gpu" and int(acc["resourceCount"]) >= 1
            assert platform[label]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            assert toleration in platform[label]["tolerations"]
        else:
            assert acc is None, f"{label} asks for a GPU"


def test_s3_credentials_come_from_the_secret(compiled: dict[str, Path]) -> None:
    spec, platform = ir.load(compiled["end-to-end"])
    s3_execs = {f"exec-{c}" for c in S3_COMPONENTS} & set(spec["deploymentSpec"]["executors"])
    assert {"exec-score-champion", "exec-publish-artifacts"} <= s3_execs
    for label in s3_execs:
        required, optional = platform[label]["secretAsEnv"]
        assert required["secretName"] == optional["secretName"] == "distillery-s3"  # as manifests/base mounts it
        assert not required["optional"] and optional["optional"]
        assert {(k["secretKey"], k["envVar"]) for k in required["keyToEnv"]} == {
            ("accessKeyId", "AWS_ACCESS_KEY_ID"), ("secretAccessKey", "AWS_SECRET_ACCESS_KEY")}
        assert {(k["secretKey"], k["envVar"]) for k in optional["keyToEnv"]} == {
            ("endpoint", "AWS_ENDPOINT_URL_S3"), ("region", "AWS_DEFAULT_REGION")}
    for label, cfg in platform.items():
        if "secretAsEnv" in cfg:
            # a component used twice (deploy with or without TensorRT plans) compiles to exec-<name>-2
            assert re.sub(r"-\d+$", "", label) in s3_execs, f"{label} gets S3 credentials it does not need"
    for ex in spec["deploymentSpec"]["executors"].values():  # never a credential in plain text
        assert "AWS_SECRET_ACCESS_KEY" not in str(ex["container"].get("env", ""))


def test_publish_is_conditional_on_a_target(compiled: dict[str, Path]) -> None:
    spec, _ = ir.load(compiled["end-to-end"])
    conds = {t["taskInfo"]["name"]: t["triggerPolicy"]["condition"]
             for _, _, t in ir.tasks(spec) if "triggerPolicy" in t}
    assert conds["publish-requested"] == "inputs.parameter_values['pipelinechannel--output_uri'] != ''"


@pytest.mark.parametrize("name", ["annotation", "end-to-end"])
def test_annotation_fans_out_in_parallel_and_collects(compiled: dict[str, Path], name: str) -> None:
    from pipelines.annotation import PARALLELISM

    spec, _ = ir.load(compiled[name])
    loops = [t for _, _, t in ir.tasks(spec) if "parameterIterator" in t]
    assert len(loops) == 1
    assert loops[0]["iteratorPolicy"]["parallelismLimit"] == PARALLELISM == 2
    assert loops[0]["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--plan-shards-Output"
    (merge,) = [t for _, n, t in ir.tasks(spec) if n == "merge-annotations"]
    source = merge["inputs"]["artifacts"]["shards"]["taskOutputArtifact"]
    assert source["producerTask"].startswith("for-loop")  # dsl.Collected over the loop's outputs
    assert spec["components"]["comp-merge-annotations"]["inputDefinitions"]["artifacts"]["shards"]["isArtifactList"]


def test_deployment_is_gated_on_the_champion_and_the_baseline(compiled: dict[str, Path]) -> None:
    spec, platform = ir.load(compiled["end-to-end"])
    groups = {t["taskInfo"]["name"]: (t, spec["components"][t["componentRef"]["name"]])
              for _, _, t in ir.tasks(spec) if "triggerPolicy" in t}
    gate, body = groups["student-beats-champion-and-baseline"]
    assert gate["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--deployment-gate-Output'] == true")
    # the gate task reads the student's, the champion's and the seed-label baseline's scores
    decision = next(t for _, n, t in ir.tasks(spec) if n == "deployment-gate")
    sources = {k: v["taskOutputParameter"]["producerTask"] for k, v in decision["inputs"]["parameters"].items()}
    assert sources == {"student_f1": "evaluate-model", "champion_f1": "score-champion",
                       "baseline_f1": "evaluate-model-2"}
    # deployment only inside the gate, and only when a serving repository is named (skipped, never failed, without)
    parent = {t["componentRef"]["name"]: (dag, t["taskInfo"]["name"]) for dag, _, t in ir.tasks(spec)}
    homes = {dag for dag, _, t in ir.tasks(spec) if t["componentRef"]["name"] == "comp-deploy-model-repository"}
    assert homes
    for home in homes:
        enclosing, dag = set(), home
        while dag != "root":
            dag, name = parent[dag]
            enclosing.add(name)
        assert {"student-beats-champion-and-baseline", "serving-repository-given"} <= enclosing, (home, enclosing)
    given, _ = groups["serving-repository-given"]
    assert given["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--serving_uri'] != ''"
    ab, ab_body = groups["champion-exists"]
    assert ab["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--champion'] != ''"
    assert "ab-evaluation" in ab_body["dag"]["tasks"]
    assert any(t["componentRef"]["name"] == ab["componentRef"]["name"] for t in body["dag"]["tasks"].values())
    assert "exec-deploy-model-repository" in platform and "secretAsEnv" in platform["exec-deploy-model-repository"]
