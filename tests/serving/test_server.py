"""A real Triton server (started once per session) behind the client, over HTTP and gRPC."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from distillery.export.repository import MANIFEST
from distillery.serving.client import ClientError, RelevanceClient
from distillery.serving.server import ModelLoadError, ServerError, TritonServer
from tests.serving.conftest import ITEMS, QUERIES, reference_probs

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_equals_in_process_student(server, students, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    with RelevanceClient(url, protocol=protocol, timeout_s=30) as client:
        got = client.score(QUERIES * 4, ITEMS * 4)  # 24 pairs: two requests at max_batch_size 16
    ref = reference_probs(students[0], QUERIES * 4, ITEMS * 4)
    assert got.shape == (24, 3)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert len(set(ref.argmax(1).tolist())) > 1  # the check is not on a constant answer


def test_champion_and_challenger_side_by_side(server, students):
    client = RelevanceClient(server.http_url)
    champion = client.score(QUERIES, ITEMS)
    challenger = client.score(QUERIES, ITEMS, model="relevance_v2")
    np.testing.assert_allclose(client.score(QUERIES, ITEMS, model="relevance_v1"), champion, atol=1e-6)
    # int8 with 7-bit weights (reduce_range): the same integers on every CPU, VNNI or not.  On these near-tied
    # random-init logits it is 0.05–0.06 from fp32 (full-range weights: 0.02, but [0.46, 0.07, 0.47] for
    # [0.33, 0.33, 0.33] on a CPU without VNNI, off by 0.26), so 0.08 passes everywhere and still catches that.
    assert json.loads((server.repo / MANIFEST).read_text())["versions"]["2"]["precision"] == "int8"
    np.testing.assert_allclose(challenger, reference_probs(students[1], QUERIES, ITEMS), atol=0.08)
    assert np.abs(champion - challenger).max() > 0.01  # two different students answered
    assert client.ready("student", "1") and client.ready("student", "2") and client.ready("tokenizer", "2")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_direct_model_answers_like_the_ensembles(server, protocol):
    """relevance_direct (tokenizer + student in one stub) gives each version's ensemble answer."""
    url = server.http_url if protocol == "http" else server.grpc_url
    with RelevanceClient(url, protocol=protocol, timeout_s=30) as client:
        for version, tol in (("1", 1e-5), ("2", 1e-5), ("3", 1e-2)):  # v3: bf16, rounding varies with padding
            want = client.score(QUERIES * 3, ITEMS * 3, model=f"relevance_v{version}")
            got = client.score(QUERIES * 3, ITEMS * 3, model="relevance_direct", version=version)
            np.testing.assert_allclose(got, want, atol=tol)


def test_bf16_version_served_by_openvino(server, students):
    got = RelevanceClient(server.grpc_url, protocol="grpc").score(QUERIES * 4, ITEMS * 4, model="relevance_v3")
    np.testing.assert_allclose(got, reference_probs(students[0], QUERIES * 4, ITEMS * 4), atol=0.02)


def test_health_readiness_and_metrics(server):
    for url, protocol in ((server.http_url, "http"), (server.grpc_url, "grpc")):
        client = RelevanceClient(url, protocol=protocol)
        assert client.live() and client.server_ready()
        assert client.ready("relevance") and client.ready("relevance_v2", "1")
        assert not client.ready("relevance", "7") and not client.ready("no_such_model")
    RelevanceClient(server.http_url).score(QUERIES[:1], ITEMS[:1])
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        text = r.read().decode()
    assert 'nv_inference_request_success{model="relevance"' in text


def test_bad_requests_get_clear_errors(server):
    client = RelevanceClient(server.http_url)
    with pytest.raises(ValueError, match="2 queries but 1 items"):
        client.score(["a", "b"], ["c"])
    with pytest.raises(ClientError, match="no_such_model"):
        client.score(["a"], ["b"], model="no_such_model")


def test_broken_model_names_model_and_reason(repo: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    (broken / "student" / "2" / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match=r"model 'student' version 2: .*Protobuf parsing failed") as info:
        TritonServer(broken).start()
    assert info.value.model == "student" and info.value.version == "2"
    with pytest.raises(ServerError, match="no such model repository"):
        TritonServer(tmp_path / "missing").start()


def test_serve_cli_reports_a_missing_repository(tmp_path: Path, capsys):
    from distillery.cli import main

    assert main(["serve", "--repo", str(tmp_path / "nope"), "--http-port", "0", "--grpc-port", "0",
                 "--metrics-port", "0"]) == 1
    assert "no such model repository" in capsys.readouterr().err


def test_serve_cli_stops_cleanly_on_ctrl_c(repo: Path):
    """`distillery serve` prints its URLs when ready and, on SIGINT, stops Triton and exits 0."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "distillery.cli", "serve", "--repo", str(repo), "--http-port", "0",
                             "--grpc-port", "0", "--metrics-port", "0"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Triton ready"), line
        http = line.split("HTTP ")[1].split()[0]
        assert RelevanceClient(http).ready("relevance")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(Exception):  # noqa: B017 - the server is gone: any connection error
            RelevanceClient(http, timeout_s=2).live()
    finally:
        if proc.poll() is None:
            proc.kill()  # Triton then gets SIGINT from the kernel (PR_SET_PDEATHSIG)
