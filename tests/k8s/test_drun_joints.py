"""The joints of the DistillationRun path, each with the real neighbour that runs here: the serving repository
on moto's S3 server, the compiled end-to-end pipeline, the deploy step's own code, the data layer's rules.

* No champion yet: the run is submitted naming the repository and no champion, the deploy step publishes
  version 1 as the champion; a second run publishes version 2 beside it as the challenger (the champion
  stays), a retried deploy adds nothing, and the operator finds the version each run published.
* No repository at all: the argument is empty and the pipeline's condition skips the deploy step.
* ``spec.data.source``: the CRD's pattern and the data layer's ``check_spec`` agree on a table of cases.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from distillery import storage
from distillery.data.schema import DataError
from distillery.data.spec import check_spec
from distillery.export.publish import artifact_uri
from distillery.operator import render, repository
from distillery.operator.spec import DATA_SOURCE, SpecError, parse_distillation_run
from distillery.stages.deploy import deploy
from tests.k8s.conftest import crd_schemas

CR = {"data": {"source": "synthetic:100"}, "profile": "tiny", "output": {"uri": "s3://runs/a"}}


def exported_repository(tmp: Path, tag: str) -> Path:
    """A repository as the export step writes it (one version, by the real writer; the graph is a placeholder:
    publishing moves files, it never runs them)."""
    from distillery.export.repository import write_version

    student = tmp / f"student-{tag}"
    student.mkdir(parents=True)
    (student / "distillery.json").write_text(json.dumps({"classes": ["Exact", "Partial", "Irrelevant"],
                                                         "item_fields": ["title"], "max_length": 64}))
    (student / "tokenizer.json").write_text("{}")
    (tmp / f"{tag}.onnx").write_bytes(b"onnx placeholder " + tag.encode())
    repo = tmp / f"exported-{tag}"
    # as on a cluster: the student artifact's local path under KFP's /s3/ mount of the pipeline root
    write_version(student, repo, 1, tmp / f"{tag}.onnx", info={"student_dir": f"/s3/runs/{tag}/kfp/model"})
    return repo


def submitted_arguments(spec: dict[str, Any], default_repository: str, name: str) -> dict[str, Any]:
    """What the operator's submit handler passes: the repository (CR's or default) and its champion, read now."""
    run = parse_distillation_run(spec)
    repo = render.serving_repository(run, default_repository)
    champion, _ = repository.champion_student(repository.read_manifest(repo)) if repo else ("", "")
    return render.pipeline_arguments(run, repo, champion, run_label=name)


def test_first_run_without_a_champion_deploys_and_the_next_is_a_challenger(bucket: str, tmp_path: Path) -> None:
    serving = f"s3://{bucket}/triton"
    args = submitted_arguments(CR, serving, "ns.first.1234abcd")
    assert args["serving_uri"] == serving and args["champion"] == ""  # the deploy step has its target
    first = deploy(exported_repository(tmp_path, "a"), args["serving_uri"], run_label=args["run_label"])
    assert (first["version"], first["role"], first["champion"]) == (1, "champion", 1)

    # The next run is compared with the champion's student (its durable S3 location), then published beside it.
    args = submitted_arguments({**CR, "serving": {"repository": serving}}, "", "ns.second.5678abcd")
    assert args["champion"] == "s3://runs/a/kfp/model"
    second = deploy(exported_repository(tmp_path, "b"), serving, run_label=args["run_label"])
    assert (second["version"], second["role"], second["champion"]) == (2, "challenger", 1)
    again = deploy(exported_repository(tmp_path / "retry", "b"), serving, run_label=args["run_label"])
    assert (again["version"], again["published"]) == (2, False)  # a retried step adds no version 3

    local = tmp_path / "serving"
    from distillery.storage import download_dir

    download_dir(serving, local)
    manifest = json.loads((local / "distillery-repository.json").read_text())
    assert (manifest["champion"], manifest["challenger"], sorted(manifest["versions"])) == (1, 2, ["1", "2"])
    # the champion ensemble still pins version 1; version 2 has its own ensemble, files and report
    assert "model_version: 1" in (local / "relevance" / "config.pbtxt").read_text()
    v2 = (local / "relevance_v2" / "config.pbtxt").read_text()
    assert 'name: "relevance_v2"' in v2 and "model_version: 2" in v2 and "model_version: 1" not in v2
    assert (local / "student" / "2" / "model.onnx").read_bytes() == b"onnx placeholder b"
    assert (local / "student" / "1" / "model.onnx").read_bytes() == b"onnx placeholder a"
    assert (local / "export-report-v2.md").exists()
    # the operator finds what each run published, by its name
    assert repository.published(manifest, "ns.second.5678abcd") == {"version": 2, "role": "challenger"}
    assert repository.published(manifest, "ns.first.1234abcd") == {"version": 1, "role": "champion"}
    assert repository.published(manifest, "ns.other.00000000") is None


def test_publishing_a_challenger_uploads_only_its_own_files_and_the_manifest_last(bucket: str,
                                                                                   tmp_path: Path) -> None:
    """The champion's objects are never rewritten (a promotion made meanwhile is not reverted): only the new
    version's objects are written, and the two manifests updated."""
    s3 = storage.client()
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    serving = f"s3://{bucket}/triton"
    deploy(exported_repository(tmp_path, "a"), serving, run_label="first")
    deploy(exported_repository(tmp_path, "b"), serving, run_label="second")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="triton/")["Versions"]
    writes = collections.Counter(v["Key"].removeprefix("triton/") for v in versions)
    rewritten = {k for k, n in writes.items() if n > 1}
    assert rewritten == {"distillery-repository.json", storage.MANIFEST}, rewritten
    assert "student/2/model.onnx" in writes and "relevance_v2/config.pbtxt" in writes
    assert storage.download_dir(serving, tmp_path / "back")["verified"]


def test_an_unreadable_repository_is_waited_for_not_published_over(s3_env: str) -> None:
    with pytest.raises(repository.RepositoryUnavailable, match="bucket 'no-such-bucket' does not exist"):
        repository.read_manifest("s3://no-such-bucket/triton")


def _deploy_conditions(compiled: dict[str, Any]) -> list[str]:
    """The trigger conditions of every DAG task on the way from the root to the deploy step."""
    comps = compiled["components"]

    def walk(dag: dict[str, Any], conds: list[str]) -> list[str] | None:
        for task in dag.get("tasks", {}).values():
            here = [*conds, task.get("triggerPolicy", {}).get("condition", "")]
            if task["componentRef"]["name"] == "comp-deploy-model-repository":
                return here
            sub = comps[task["componentRef"]["name"]].get("dag")
            found = walk(sub, here) if sub else None
            if found:
                return found
        return None

    return [c for c in walk(compiled["root"]["dag"], []) or [] if c]


def test_without_a_repository_the_pipeline_skips_deployment(tmp_path: Path) -> None:
    from pipelines.kfp_backend import compile_end_to_end

    args = submitted_arguments(CR, "", "ns.none.0000abcd")
    assert args["serving_uri"] == "" and args["champion"] == ""
    params = compile_end_to_end(tmp_path / "e2e.yaml")
    assert set(args) <= params, f"arguments the pipeline does not declare: {set(args) - params}"
    compiled = next(yaml.safe_load_all((tmp_path / "e2e.yaml").read_text()))
    conds = _deploy_conditions(compiled)
    assert any("serving_uri" in c and "!= ''" in c for c in conds), conds  # empty target: skipped, never failed
    assert any("deployment-gate" in c or "Output" in c for c in conds), conds  # and only past the gate
    status = repository.published_status("", None)
    assert status["note"].startswith("no serving repository")


def test_the_teacher_training_placement_maps_onto_teacher_launch() -> None:
    run = parse_distillation_run({**CR, "teacher": {"training": {"launcher": "pytorchjob", "numNodes": 2,
                                                                  "procsPerNode": 8}}})
    launch = render.pipeline_config(run)["teacher"]["launch"]
    assert (launch["launcher"], launch["num_nodes"], launch["procs_per_node"]) == ("pytorchjob", 2, 8)
    # a rule the schema cannot state (one node for a local launcher) names the CR's field, not the config's
    bad = parse_distillation_run({**CR, "teacher": {"training": {"launcher": "local", "numNodes": 2}}})
    with pytest.raises(SpecError) as info:
        render.pipeline_config(bad)
    assert info.value.field == "spec.teacher.training.numNodes"


def test_kfp_artifact_paths_map_to_their_s3_location() -> None:
    assert artifact_uri("/s3/runs/x/kfp/relevance-distillery/r1/distill-student/7/model") == \
        "s3://runs/x/kfp/relevance-distillery/r1/distill-student/7/model"
    assert artifact_uri("/tmp/local/model") == "/tmp/local/model"


SOURCES = [
    # (spec.data.source, accepted)
    ("parquet:s3://distillery-data/esci/shopping_queries.parquet", True),
    ("csv:s3://bkt/logs/2026-01.csv.gz,query=search_term,item_id=sku", True),
    ("tsv:/data/logs.tsv", True),
    ("jsonl:s3://bkt/a.jsonl,label=grade,label_source=src", True),
    ("esci:s3://bkt/esci_us_dev.tsv.gz", True),
    ("esci:/data/esci.parquet,locale=jp", True),
    ("esci:/data/esci.parquet,locale=", True),
    ("synthetic:2000", True),
    ("synthetic:2000,seed=7", True),
    ("synthetic:2000,noise=0.1,seed=3", True),
    ("synthetic:50,noise=0.5", True),
    ("synthetic:50,noise=.25", True),
    ("s3://distillery-data/esci/shopping_queries.parquet", False),  # a file needs its kind
    ("parquet:s3://distillery-data/", False),
    ("parquet:s3://Bad_Bucket/x.parquet", False),
    ("parquet:gs://bkt/x.parquet", False),
    ("parquet:", False),
    ("xlsx:/data/x.xlsx", False),
    ("csv:/data/x.csv,sku=item_id", False),
    ("csv:/data/x.csv,query=", False),
    ("csv:/data/x.csv,query", False),
    ("esci:/data/x.tsv,region=us", False),
    ("synthetic:0", False),
    ("synthetic:ten", False),
    ("synthetic:10,seed=-1", False),
    ("synthetic:10,noise=0.6", False),
    ("synthetic:10,noise=1", False),
    ("synthetic:10,temperature=2", False),
]


@pytest.mark.parametrize(("source", "accepted"), SOURCES, ids=[s for s, _ in SOURCES])
def test_the_crd_pattern_and_the_data_layer_agree(source: str, accepted: bool) -> None:
    pattern = crd_schemas()["DistillationRun"]["properties"]["spec"]["properties"]["data"]["properties"]["source"][
        "pattern"]
    assert pattern == DATA_SOURCE.pattern, "the CRD's pattern is the operator's DATA_SOURCE"
    assert bool(re.match(pattern, source)) is accepted, f"the CRD {'refuses' if accepted else 'accepts'} {source!r}"
    try:
        check_spec(source)
        checked = True
    except DataError:
        checked = False
    assert checked is accepted, f"check_spec {'refuses' if accepted else 'accepts'} {source!r}"
    if not accepted:  # and the operator names the field
        with pytest.raises(SpecError) as info:
            parse_distillation_run({**CR, "data": {"source": source}})
        assert info.value.field == "spec.data.source"


def test_student_gpu_builds_the_tensorrt_plan_of_a_tensorrt_repository() -> None:
    trt = {**CR, "overrides": {"export.variants": "python,tensorrt"}}
    assert render.pipeline_arguments(parse_distillation_run(trt))["tensorrt_plan"] is True
    off = {**trt, "student": {"gpu": False}}
    assert render.pipeline_arguments(parse_distillation_run(off))["tensorrt_plan"] is False
    assert render.pipeline_arguments(parse_distillation_run(CR))["tensorrt_plan"] is False  # no tensorrt variant
