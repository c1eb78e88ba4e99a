"""Must-show 2 and 3 of the cluster path: ``kubectl apply`` a RelevanceExperiment on the cluster-in-a-box.

The serving repository lives in S3 (moto), filled through the project's own publish path
(:func:`distillery.stages.deploy.deploy`, what a DistillationRun's deploy step runs); the real Triton serves it
straight from S3; the splitter runs as its own process (``python -m distillery.abtest.splitter_main``) reading a
split file that :class:`ConfigMapProjection` keeps equal to the operator's ConfigMap; simulated users search
through the splitter and POST their clicks and conversions to its ``/events``; the operator's gate reads the
splitter's log folder (``spec.metricsSource.uri``).

2. A better challenger (v2, fine-tuned on the labelled candidates of the queries the users search) against a
   never-trained champion (v1): the weights step 50 → 60 %, then the gate promotes; the repository's manifest
   and ``relevance`` ensemble, the ConfigMap and the splitter all name v2.
3. A challenger whose version the repository lacks (Triton answers 404): its users fail over to the champion,
   every request is answered, the error-rate guardrail rolls it back and the status says why; v1 stays.

    pytest -m cluster tests/cluster/test_experiment.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distillery.abtest.simulator import ClickModel, QueryGroup, Served, SimConfig, build_queries, observe, plan_batch
from distillery.data.synthetic import generate
from tests.cluster.conftest import CMS, EXPS, NS, World
from tests.k8s.operator_proc import S3_ENV, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

EXPERIMENT = "relevance-v2"
CONFIG_MAP = "distillery-splitter"
HEAD = generate(72, seed=5)
"""The head of the marketplace: 6 queries with 12 candidates each, the only queries the simulated users search."""
SIM = SimConfig(users_per_batch=100, sessions_per_user=1.0, shown=3, seed=7,
                click_model=ClickModel(click=(0.02, 0.10, 0.40, 0.80)))
"""Users who look at the top 3 and click the right service eagerly: a better ranking shows in few users."""
EVENT_FIELDS = ("event", "user_id", "request_id", "item_id", "value")


# ---------------------------------------------------------------- the serving repository in S3


@dataclass(frozen=True)
class Repo:
    uri: str
    """The serving repository as the operator and the publish step name it (``s3://BUCKET/triton``)."""
    triton: str
    """The same as Triton reads it (``s3://http://HOST:PORT/BUCKET/triton``)."""


@pytest.fixture()
def repo(world: World, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A serving repository of this test's own (the S3 server lives for the session); this process reaches the
    S3 server as the pods do: endpoint and credentials from the environment (Triton too: it reads the
    repository itself)."""
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL_S3": world.s3, "AWS_ENDPOINT_URL": world.s3}.items():
        monkeypatch.setenv(key, value)
    path = f"models-{uuid.uuid4().hex[:8]}/triton"
    return Repo(f"s3://{path}", f"s3://http://{world.s3.removeprefix('http://')}/{path}")


def trained_student(out: Path) -> Path:
    """The tiny student fine-tuned on every labelled candidate of the head queries: near-ideal on them."""
    from distillery.config import load_config, parse_overrides
    from distillery.data.splits import Splits
    from distillery.student.finetune import run_finetune

    cfg = load_config("tiny", overrides=parse_overrides(
        ["train.epochs=40", "train.patience=100", "train.lr=3e-3", "train.class_weighting=none"]))
    run_finetune(Splits(HEAD, [], HEAD, HEAD), cfg, out, model_dir=out / "model")
    return out / "model"


def untrained_student(out: Path) -> Path:
    """A random-init tiny student (never trained): its ranking of a query's candidates has nothing to do with
    their relevance."""
    from tests.students import make_student

    return make_student(out, 1, [p.query for p in HEAD], [p.title for p in HEAD])


def publish(world: World, repo: Repo, students: list[Path]) -> list[dict[str, Any]]:
    """Export each student and publish it into the serving repository, as each DistillationRun's deploy step does:
    the first becomes the champion (v1), the next the challenger (v2)."""
    from distillery.export.repository import build_repository
    from distillery.stages.deploy import deploy
    from distillery.storage import client

    client().create_bucket(Bucket=repo.uri.removeprefix("s3://").split("/")[0])
    out = []
    for i, student in enumerate(students, 1):
        exported = world.tmp / f"export-{i}"
        build_repository(student, exported, version=1)
        out.append(deploy(exported, repo.uri, run_label=f"{NS}.run-{i}.0000000{i}"))
    return out


def s3_text(repo: Repo, key: str) -> str:
    from distillery.storage import client

    bucket, _, prefix = repo.uri.removeprefix("s3://").partition("/")
    return str(client().get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read().decode())


# ---------------------------------------------------------------- the ConfigMap volume and the splitter


class ConfigMapProjection(threading.Thread):
    """FAKE of the kubelet's ConfigMap volume projection: polls the ConfigMap on the API server (kmock) and
    replaces ``path`` in one rename whenever its ``split.json`` changes, as the kubelet updates a mounted
    ConfigMap; every distinct content is kept in ``history`` (the weights the operator wrote, in order)."""

    def __init__(self, world: World, path: Path, name: str = CONFIG_MAP) -> None:
        super().__init__(daemon=True)
        self.world, self.path, self.name = world, path, name
        self.history: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.2):
            cm = self.world.cluster.request("GET", f"{CMS}/{self.name}") or {}
            text = (cm.get("data") or {}).get("split.json")
            if text and (not self.history or json.loads(text) != self.history[-1]):
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(text)
                os.replace(tmp, self.path)
                self.history.append(json.loads(text))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def weights(self) -> list[tuple[str, int, str, int]]:
        """(champion model, weight, challenger model, weight) of each split written."""
        return [(d["arms"][0]["model"], d["arms"][0]["weight"], d["arms"][1]["model"], d["arms"][1]["weight"])
                for d in self.history]


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@contextmanager
def splitter(split_file: Path, triton_url: str, logs: Path) -> Iterator[str]:
    """The splitter app in its own process, its exposures and the events it collects in ``logs`` (the volume
    ``spec.metricsSource.uri`` names); yields its URL once ``/ready`` answers 200."""
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "distillery.abtest.splitter_main", "--split", str(split_file),
           "--triton-url", triton_url, "--port", "0", "--poll-s", "0.2",
           "--exposure-log", str(logs / "exposures-splitter-0.jsonl"),
           "--events-log", str(logs / "events-splitter-0.jsonl")]
    with (split_file.parent / "splitter.log").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("SPLITTER_READY "), f"the splitter did not start: {line!r}"
        url = line.split()[1]
        deadline = time.monotonic() + 60
        while http("GET", f"{url}/ready")[0] != 200:
            assert time.monotonic() < deadline, "the splitter never became ready"
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------- simulated users


@dataclass
class Users:
    """Simulated users searching through the splitter batch by batch, posting their clicks and conversions to
    its ``/events``; every answer's HTTP status is kept."""

    url: str
    queries: list[QueryGroup] = field(default_factory=lambda: build_queries(HEAD))
    batches: int = 0
    statuses: list[int] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)

    def batch(self) -> None:
        import asyncio

        from distillery.abtest.httpsim import serve_batch

        plan = plan_batch(SIM, len(self.queries), self.batches)
        self.batches += 1
        served = asyncio.run(serve_batch(self.url, plan, self.queries, concurrency=4))
        # A 200 always carries a ranking of the query's candidates (2 or more): an empty order is a failed request.
        self.statuses += [200 if sv.order else 500 for sv in served]
        self.served += served
        events: list[dict[str, Any]] = []
        observe(plan, served, self.queries, SIM, events=events.append)
        lines = [json.dumps({"event_id": f"{e['request_id']}-{e['position']}-{e['event']}",
                             **{k: e[k] for k in EVENT_FIELDS if k in e}})
                 for e in events if e["event"] != "impression"]
        if lines:
            status, answer = http("POST", f"{self.url}/events", "\n".join(lines).encode())
            assert status == 200 and answer["accepted"] == len(lines), answer

    def until(self, done: Callable[[], bool], world: World, max_batches: int) -> None:
        """Batches of users until ``done()`` or ``max_batches`` (then fail with the operator's log)."""
        while not done():
            if self.batches >= max_batches:
                pytest.fail(f"no outcome after {self.batches * SIM.users_per_batch} users: "
                            f"{status(world)}\n--- operator log ---\n{world.operator.tail()}")
            if world.operator.proc is not None and world.operator.proc.poll() is not None:
                pytest.fail(f"the operator exited:\n{world.operator.tail()}")
            self.batch()


# ---------------------------------------------------------------- the experiment


def experiment(repo: Repo, logs: Path, challenger: int, steps: list[int], **gate: Any) -> dict[str, Any]:
    return {
        "apiVersion": "distillery.relevance.dev/v1alpha1", "kind": "RelevanceExperiment",
        "metadata": {"name": EXPERIMENT, "namespace": NS},
        "spec": {"champion": {"model": "relevance", "version": 1},
                 "challenger": {"model": "relevance", "version": challenger},
                 "traffic": {"steps": steps}, "analysisIntervalSeconds": 1,
                 "gate": {"primaryMetric": "ctr", "guardrailMetrics": [], "maxAnalysesPerStep": 0, **gate},
                 "metricsSource": {"uri": str(logs)}, "splitter": {"configMap": CONFIG_MAP},
                 "serving": {"repository": repo.uri}},
    }


def status(world: World) -> dict[str, Any]:
    return (world.cluster.request("GET", f"{EXPS}/{EXPERIMENT}") or {}).get("status") or {}


@contextmanager
def running(world: World, cr: dict[str, Any], repo: Repo) -> Iterator[tuple[ConfigMapProjection, str]]:
    """Triton on the S3 repository, the CR applied, the operator, the projected ConfigMap and the splitter;
    yields (projection, splitter URL)."""
    from distillery.serving.server import TritonServer

    split_file = world.tmp / "splitter" / "split.json"
    split_file.parent.mkdir()
    projection = ConfigMapProjection(world, split_file)
    with TritonServer(repo.triton) as triton:
        world.cluster.request("POST", EXPS, cr)
        world.operator.start()
        projection.start()
        try:
            wait_for("the splitter's ConfigMap", split_file.exists, world.operator, timeout=60)
            with splitter(split_file, triton.http_url, Path(cr["spec"]["metricsSource"]["uri"])) as url:
                yield projection, url
        finally:
            projection.stop()


def restart_mid_experiment(world: World) -> None:
    """Kill the operator between two looks and start a new one: the sequential test continues from
    ``status.gate`` (one more look, same mixing variance per metric), it does not start over."""
    world.operator.stop()
    before = status(world)
    world.operator.start()
    wait_for("a look by the restarted operator", lambda: status(world).get("latestAnalysis", {}).get("time")
             != before.get("latestAnalysis", {}).get("time"), world.operator, timeout=60)
    after = status(world)
    if after.get("weights") != before.get("weights") or after.get("phase") != before.get("phase"):
        return  # that look moved the traffic: the next step's test starts afresh by design
    gate0, gate1 = before["gate"], after["gate"]
    assert gate1["looks"] == gate0["looks"] + 1, (gate0, gate1)
    assert gate1.get("since") == gate0.get("since")
    for arm, tests in gate0["tests"].items():
        for metric, row in tests.items():
            assert gate1["tests"][arm][metric]["tau2"] == row["tau2"], (arm, metric)


def test_a_better_challenger_steps_its_weights_then_is_promoted(world: World, repo: Repo) -> None:
    published = publish(world, repo, [untrained_student(world.tmp / "v1"), trained_student(world.tmp / "v2")])
    assert [(p["version"], p["role"]) for p in published] == [(1, "champion"), (2, "challenger")]
    logs = world.tmp / "splitter-logs"
    # A gate that decides in a few thousand users (alpha 0.1), with latency and error ceilings that leave room
    # for a loaded 2-core machine: this test is about the metric decision.
    cr = experiment(repo, logs, 2, [50, 60], alpha=0.1, minUsers=100, maxLatencyRatio=5.0, maxErrorRate=0.05)
    with running(world, cr, repo) as (projection, url):
        users = Users(url)
        users.until(lambda: bool((status(world).get("gate") or {}).get("looks")), world, max_batches=150)
        restart_mid_experiment(world)
        users.until(lambda: status(world).get("phase") in ("Promoted", "RolledBack"), world, max_batches=150)
        wait_for("the promoted split", lambda: http("GET", f"{url}/admin/split")[1]["arms"][0]["model"]
                 == "relevance_v2", world.operator, timeout=30)
        split = http("GET", f"{url}/admin/split")[1]

    st = status(world)
    assert st["phase"] == "Promoted", f"{st}\n--- operator log ---\n{world.operator.tail()}"
    assert st["champion"] == {"model": "relevance", "version": 2} and st["decision"] == "promote"
    cond = {c["type"]: c for c in st["conditions"]}["Promoted"]
    assert (cond["status"], cond["reason"]) == ("True", "GatePromote") and "ctr" in cond["message"]
    # The weights stepped (50 → 60 %) before the promotion handed v2 all the traffic.
    assert projection.weights() == [("relevance_v1", 50, "relevance_v2", 50), ("relevance_v1", 40, "relevance_v2", 60),
                                     ("relevance_v2", 100, "relevance_v2", 0)], projection.history
    assert [(a["name"], a["model"], a["weight"]) for a in split["arms"]] == [
        ("champion", "relevance_v2", 100), ("challenger", "relevance_v2", 0)]
    # The repository names v2 too: its manifest, and the `relevance` ensemble Triton serves as the champion.
    manifest = json.loads(s3_text(repo, "distillery-repository.json"))
    assert manifest["champion"] == 2 and manifest.get("challenger") is None
    assert s3_text(repo, "relevance/config.pbtxt") == s3_text(repo, "relevance_v2/config.pbtxt").replace(
        'name: "relevance_v2"', 'name: "relevance"')
    # Every user was answered, and the challenger won on what they did.
    assert set(users.statuses) == {200}, f"{users.statuses.count(500)} requests failed"
    assert st["latestAnalysis"]["lift"] > 0
    # A Triton (re)loading the repository from S3 serves v2 as `relevance`.
    from distillery.serving.client import RelevanceClient
    from distillery.serving.server import TritonServer

    queries, items = [p.query for p in HEAD[:12]], [p.title for p in HEAD[:12]]
    with TritonServer(repo.triton) as triton, RelevanceClient(triton.http_url) as client:
        served, v1, v2 = (np.asarray(client.score(queries, items, model=m))
                          for m in ("relevance", "relevance_v1", "relevance_v2"))
    np.testing.assert_allclose(served, v2, atol=1e-6)
    assert np.abs(served - v1).max() > 1e-4


def test_an_absent_challenger_is_rolled_back_and_no_request_fails(world: World, repo: Repo) -> None:
    (v1,) = publish(world, repo, [untrained_student(world.tmp / "v1")])
    assert (v1["version"], v1["role"]) == (1, "champion")
    logs = world.tmp / "splitter-logs"
    # Version 2 was never published: Triton has no relevance_v2 and answers 404 for it. The metric test
    # cannot decide first (minUsers out of reach), so what ends the experiment is the error-rate guardrail.
    cr = experiment(repo, logs, 2, [50], minUsers=100000, maxErrorRate=0.01)
    with running(world, cr, repo) as (projection, url):
        users = Users(url)
        users.until(lambda: status(world).get("phase") in ("Promoted", "RolledBack"), world, max_batches=30)
        wait_for("the rolled-back split", lambda: http("GET", f"{url}/admin/split")[1]["arms"][1]["weight"] == 0,
                 world.operator, timeout=30)
        users.batch()  # after the rollback: everyone on the champion, nobody failed over
        after = users.served[-SIM.users_per_batch:]

    st = status(world)
    assert st["phase"] == "RolledBack" and st["decision"] == "rollback", st
    cond = {c["type"]: c for c in st["conditions"]}["RolledBack"]
    assert (cond["status"], cond["reason"]) == ("True", "GateRollback")
    assert "challenger: error rate 100.00% > 1.00%" in cond["message"], cond
    assert "failovers count against it" in cond["message"] and st["message"] == cond["message"]
    events = world.cluster.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    assert [e["message"] for e in events if e.get("reason") == "RolledBack"] == [cond["message"]]
    # The champion is unchanged, in the status and in the repository.
    assert st["champion"] == {"model": "relevance", "version": 1}
    assert json.loads(s3_text(repo, "distillery-repository.json"))["champion"] == 1
    assert projection.weights()[-1] == ("relevance_v1", 100, "relevance_v2", 0)
    # Every request was answered 200: the challenger's users were served by the champion, visibly.
    assert set(users.statuses) == {200}, f"{users.statuses.count(500)} requests failed"
    challenger_users = [sv for sv in users.served if sv.arm == "challenger"]
    assert challenger_users and all(sv.failed for sv in challenger_users)
    assert all(sv.arm == "champion" and not sv.failed for sv in after)
