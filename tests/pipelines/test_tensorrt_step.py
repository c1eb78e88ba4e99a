"""The end-to-end pipeline's TensorRT plan step: off by default, on a GPU in the serving image when asked for,
and the repository it deploys is then the one with the plans."""

from __future__ import annotations

import pytest

from distillery.images import image
from tests.pipelines import ir


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    from kfp import compiler

    from pipelines.end_to_end import relevance_distillery

    out = tmp_path_factory.mktemp("compiled") / "end-to-end.yaml"
    compiler.Compiler().compile(relevance_distillery, str(out))
    return ir.load(out)


def test_plan_step_runs_in_the_serving_image_on_a_gpu(compiled: tuple[dict, dict]) -> None:
    spec, platform = compiled
    container = spec["deploymentSpec"]["executors"]["exec-build-tensorrt-plan"]["container"]
    assert container["image"] == image("serving")  # the TensorRT that loads the plan builds it
    assert container["command"] == ["python3", "-m", "distillery.export.plan"]
    assert container["args"][::2] == ["--repo", "--out"]
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert platform["exec-build-tensorrt-plan"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}


def test_plan_step_is_off_by_default_and_feeds_the_deploy_step(compiled: tuple[dict, dict]) -> None:
    spec, _ = compiled
    assert spec["root"]["inputDefinitions"]["parameters"]["tensorrt_plan"]["defaultValue"] is False
    groups = {t["taskInfo"]["name"]: (t, spec["components"][t["componentRef"]["name"]])
              for _, _, t in ir.tasks(spec) if "triggerPolicy" in t}
    on, on_body = groups["tensorrt-plan-requested"]
    off, off_body = groups["no-tensorrt-plan"]
    assert on["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--tensorrt_plan'] == true"
    assert off["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--tensorrt_plan'] == false"
    deploy_on = next(t for n, t in on_body["dag"]["tasks"].items() if n.startswith("deploy-model-repository"))
    source = deploy_on["inputs"]["artifacts"]["model_repository"]["taskOutputArtifact"]
    assert source == {"producerTask": "build-tensorrt-plan", "outputArtifactKey": "plan_repository"}
    deploy_off = next(t for n, t in off_body["dag"]["tasks"].items() if n.startswith("deploy-model-repository"))
    assert "componentInputArtifact" in deploy_off["inputs"]["artifacts"]["model_repository"]  # the export as it is
    assert "build-tensorrt-plan" not in off_body["dag"]["tasks"]
