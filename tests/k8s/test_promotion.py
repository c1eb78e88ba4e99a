"""Promotion makes the challenger the champion in the model repository (S3 on moto's server, then served by a
real Triton) and in the splitter's split; a rollback keeps the champion and says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from distillery import storage
from distillery.abtest.arms import split_from_dict
from distillery.export.champion import PromotionError, champion_version, promote_version
from distillery.operator import render, rollout
from distillery.operator.spec import parse_relevance_experiment
from tests.abtest.helpers import make_student

T0 = "2026-11-28T07:00:00.000Z"
EXP = {"champion": {"model": "relevance", "version": 1}, "challenger": {"model": "relevance", "version": 2},
       "metricsSource": {"uri": "/logs"}, "traffic": {"steps": [10, 50]}, "gate": {"maxAnalysesPerStep": 2}}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository as two DistillationRuns leave it: version 1 the champion, version 2 the challenger beside it."""
    from distillery.export.repository import build_repository

    root = tmp_path_factory.mktemp("promotion")
    build_repository(make_student(root / "s1", 1), root / "repo", version=1)
    build_repository(make_student(root / "s2", 2), root / "repo", version=2, promote=False)
    return root / "repo"


@pytest.mark.e2e
def test_promotion_rewrites_the_repository_champion_that_triton_serves(two_versions: Path, bucket: str,
                                                                       tmp_path: Path) -> None:
    from distillery.serving.client import RelevanceClient
    from distillery.serving.server import TritonServer

    uri = f"s3://{bucket}/triton"
    storage.copy_tree(two_versions, uri)
    assert champion_version(uri) == 1
    manifest = promote_version(uri, 2)
    assert manifest["champion"] == 2 and champion_version(uri) == 2 and manifest.get("challenger") is None
    assert promote_version(uri, 2) == manifest  # a retried promotion changes nothing
    with pytest.raises(PromotionError, match=r"no version 3 to promote \(versions: \[1, 2\]\)"):
        promote_version(uri, 3)

    # The tree still verifies against its checksums (what the next DistillationRun's export downloads).
    fetched = tmp_path / "fetched"
    assert storage.download_dir(uri, fetched)["verified"]
    config = (fetched / "relevance" / "config.pbtxt").read_text()
    assert config == (fetched / "relevance_v2" / "config.pbtxt").read_text().replace(
        'name: "relevance_v2"', 'name: "relevance"')
    # The same promotion of a folder gives the same files.
    local = tmp_path / "folder"
    shutil.copytree(two_versions, local)
    assert promote_version(f"file://{local}", 2)["champion"] == 2
    assert (local / "relevance" / "config.pbtxt").read_text() == config
    # Triton, loading the tree the serving pod fetches from S3, serves version 2 as `relevance`.
    queries, items = ["thai massage open late", "cheap sushi"], ["Golden Thai Massage Spa | spa", "Lucky Sushi"]
    with TritonServer(fetched) as triton:
        client = RelevanceClient(triton.http_url)
        champion = client.score(queries, items)
        v1, v2 = client.score(queries, items, model="relevance_v1"), client.score(queries, items, model="relevance_v2")
    np.testing.assert_allclose(champion, v2, atol=1e-6)
    assert np.abs(np.asarray(v1) - np.asarray(v2)).max() > 1e-4, "the two tiny students should differ"


def test_promotion_and_rollback_in_the_split_and_the_status() -> None:
    exp = parse_relevance_experiment(EXP)
    state = rollout.initial_state(exp, T0)
    split = split_from_dict(json.loads(render.splitter_configmap("ns", "e", "uid", exp, state.champion,
                                                                 render.weights(exp, 0, state.phase))["data"]
                                       [render.SPLIT_KEY]))
    # Each arm addresses the ensemble of its version: relevance_v2 exists in the repository, `relevance` v2 not.
    assert [(a.model, a.version, a.weight) for a in split.arms] == [("relevance_v1", "", 90), ("relevance_v2", "", 10)]

    promoted = rollout.step(exp, rollout.step(exp, state, "promote", "better", T0).state, "promote", "better", T0)
    assert (promoted.decision, promoted.state.champion.version) == ("promote", 2)
    cm = render.splitter_configmap("ns", "e", "uid", exp, promoted.state.champion,
                                   render.weights(exp, promoted.state.step, promoted.state.phase))
    arms = json.loads(cm["data"][render.SPLIT_KEY])["arms"]
    assert arms[0] == {"name": "champion", "model": "relevance_v2", "version": "", "weight": 100}
    (cond,) = promoted.conditions([], T0)
    assert (cond["type"], cond["status"], cond["reason"]) == ("Promoted", "True", "GatePromote")

    # Rolled back: all traffic to the champion, which stays version 1; the why is in the condition and the Event.
    rolled = rollout.step(exp, state, "rollback", "challenger: error rate 4.00% > 1.00% over 250 requests", T0)
    assert (rolled.state.phase, rolled.state.champion.version) == ("RolledBack", 1)
    assert render.weights(exp, rolled.state.step, rolled.state.phase) == {"champion": 100, "challenger": 0}
    (cond,) = rolled.conditions([], T0)
    assert (cond["type"], cond["status"], cond["reason"]) == ("RolledBack", "True", "GateRollback")
    assert "error rate 4.00%" in cond["message"] and cond["message"] == rolled.event[2]
    assert rolled.event[:2] == ("Warning", "RolledBack")
    stuck = rollout.step(exp, rollout.step(exp, state, "continue", "not yet", T0).state, "continue", "not yet", T0)
    assert stuck.conditions([], T0)[0]["reason"] == "NoDecision" and "no decision after 2" in stuck.event[2]


def test_a_corrupt_repository_manifest_is_an_error_naming_the_file(tmp_path: Path) -> None:
    """Promotion, the plan step and export all read the manifest through one reader, which names the file."""
    from distillery.export.plan import main as plan_main
    from distillery.export.repository import MANIFEST, read_manifest

    (tmp_path / MANIFEST).write_text('{"versions": {"1": ')
    where = rf"{tmp_path / MANIFEST}: not valid JSON"
    for call in (lambda: promote_version(str(tmp_path), 1), lambda: champion_version(f"file://{tmp_path}"),
                 lambda: read_manifest(tmp_path)):
        with pytest.raises(ValueError, match=where):
            call()
    assert plan_main(["--repo", str(tmp_path), "--print"]) == 1
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{tmp_path / MANIFEST}: expected a JSON object"):
        read_manifest(tmp_path)


def test_a_corrupt_repository_manifest_on_s3_names_the_object(bucket: str) -> None:
    from distillery.export.repository import MANIFEST

    storage.client().put_object(Bucket=bucket, Key=f"triton/{MANIFEST}", Body=b"not json")
    with pytest.raises(ValueError, match=rf"s3://{bucket}/triton/{MANIFEST}: not valid JSON"):
        champion_version(f"s3://{bucket}/triton")
