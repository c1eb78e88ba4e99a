"""Annotation through a real ``distillery teacher serve`` process on loopback (``--teacher openai:…``): the same
records as the in-process teacher, a server SIGKILLed and restarted mid-shard, throughput in the report, and
the server's own answers to bad requests.

Why the two backends can be compared exactly: the tiny teacher is a random-init Llama seeded by
``teacher.seed`` (``torch.manual_seed`` before it is built), so both processes hold the same weights (the
identities' weights fingerprints are compared); prompts go to the server as the same token ids, and the server
is started with ``--max-logprobs 0`` so that the label read gets the whole vocabulary's logprobs (a random-init
model spreads its probability over all 49k tokens; a real teacher puts the label words in any top-20).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillery.annotation import merge_shards, read_shard_file, select_pairs, shard_paths
from distillery.annotation.shards import pair_key, partition
from distillery.cli import main
from distillery.config import load_config
from distillery.data import load_pairs
from distillery.teacher.endpoint import EndpointClient

DATA = "synthetic:40"
KILL_DATA = "synthetic:24"
VOCAB = "49152"  # SmolLM2's vocabulary: the tiny teacher's whole top-K
PROB_TOLERANCE = 1e-5
"""The two processes run the same float32 weights on the same tokens; the in-process decoder batches 8 left-padded
prompts and reads the shared system prefix through its cascade attention, the server runs one unpadded prompt,
so sums are accumulated in a different order: about 1e-7 apart measured, float32 rounding of ~50 additions."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "distillery.cli", "teacher", "serve", "--model", "tiny", "--profile", "tiny",
           "--port", str(port), "--max-logprobs", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {proc.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    proc.kill()
    pytest.fail("the server was not ready within 120 s")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0].decode()
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    proc = _start_server(port)
    yield f"http://127.0.0.1:{port}/v1"
    out = _stop(proc)
    assert proc.returncode == 0 and "stopped after" in out, out[-2000:]  # SIGTERM stops it cleanly


def _annotate(teacher: str, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["annotate", "--teacher", teacher, "--data", DATA, "--profile", "tiny", "--set", "annotate.split=all",
                 "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    return printed.out


@pytest.mark.e2e
def test_endpoint_records_match_the_in_process_teacher(server: str, tmp_path: Path, capsys) -> None:
    out = _annotate(f"openai:{server},model=tiny,label_logprobs={VOCAB}", tmp_path / "engine", capsys)
    assert "requests/s" in out and "tokens/s" in out
    _annotate("tiny", tmp_path / "local", capsys)
    engine = read_shard_file(shard_paths(tmp_path / "engine", 0, 1).records).records
    local = read_shard_file(shard_paths(tmp_path / "local", 0, 1).records).records
    assert [pair_key_of(r) for r in engine] == [pair_key_of(r) for r in local] and len(engine) == 40
    assert engine[0]["teacher"]["served"]["distillery"]["weights_sha256_16"] == \
        local[0]["teacher"]["weights_sha256_16"]
    for e, loc in zip(engine, local, strict=True):
        assert e["label"] == loc["label"]
        assert e["label_probs"] == pytest.approx(loc["label_probs"], abs=PROB_TOLERANCE)
        assert (e["raw"], e["forced_label"], e["prompt_tokens"], e["generated_tokens"]) == (
            loc["raw"], loc["forced_label"], loc["prompt_tokens"], loc["generated_tokens"])
    report = merge_shards(tmp_path / "engine", tmp_path / "merged.jsonl")
    assert report.requests_per_second > 0 and report.engine_tokens_per_second > 0
    assert "requests/s" in (tmp_path / "merged.report.md").read_text()


def pair_key_of(rec: dict) -> tuple[str, str]:
    return rec["query_id"], rec["item_id"]


def _start_annotate(url: str, out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "distillery.cli", "annotate", "--teacher",
           f"openai:{url},model=tiny,patience=120", "--data", KILL_DATA, "--profile", "tiny",
           "--batch-size", "2", "--set", "annotate.split=all", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


@pytest.mark.e2e
def test_server_killed_and_restarted_mid_shard(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = _start_server(port)
    annotate = _start_annotate(url, tmp_path)
    records = shard_paths(tmp_path, 0, 1).records
    deadline = time.monotonic() + 120
    while not (records.exists() and records.read_bytes().count(b"\n") >= 4):
        assert time.monotonic() < deadline and annotate.poll() is None, "no records before the kill"
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)  # mid-shard: requests in flight fail, the next ones are refused
    server.wait(timeout=30)
    before = len(read_shard_file(records).records)
    assert before < 24, "the kill must land mid-shard"
    server = _start_server(port)  # the client keeps retrying within its patience window
    try:
        out = annotate.communicate(timeout=300)[0].decode()
    finally:
        _stop(server)
    assert annotate.returncode == 0, out[-3000:]
    retried = re.search(r"(\d+) retried", out)
    assert retried and int(retried.group(1)) > 0, out[-3000:]  # the restart went through the retry window
    keys = [pair_key_of(r) for r in read_shard_file(records).records]
    pairs = select_pairs(load_pairs(KILL_DATA), _all_split())
    assert keys == [pair_key(p) for p in partition(pairs, 0, 1)]  # every input pair once, in order
    assert len(set(keys)) == len(keys) == 24


def _all_split():
    cfg = load_config("tiny")
    cfg.annotate.split = "all"
    return cfg


def _post(url: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.e2e
@pytest.mark.parametrize(("body", "status", "message"), [
    ({"model": "tiny", "prompt": "hi", "max_tokens": -1}, 400, "max_tokens=-1"),
    ({"model": "gpt-4", "prompt": "hi"}, 404, "serves 'tiny'"),
    ({"model": "tiny", "prompt": []}, 400, "prompt: must be"),
    ({"model": "tiny", "prompt": [10**9]}, 400, "outside the vocabulary"),
    ({"model": "tiny", "prompt": "hi", "logprobs": 10**7}, 400, "logprobs=10000000"),
    ({"model": "tiny", "prompt": "hi", "n": 2}, 400, "n=2: not supported"),
    (b"{not json", 400, "not JSON"),
])
def test_bad_requests_get_a_400_naming_the_field(server: str, body: object, status: int, message: str) -> None:
    code, reply = _post(f"{server}/completions", body)
    assert code == status and message in reply["error"]["message"]


@pytest.mark.e2e
def test_an_over_long_chat_request_is_a_400_as_a_completion_is(server: str) -> None:
    # The templated conversation plus max_tokens must fit the model's 2048 positions, or the model fails (a 500).
    code, reply = _post(f"{server}/chat/completions", {"model": "tiny", "max_tokens": 2048,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    assert code == 400, reply
    assert reply["error"]["message"].startswith("messages (with the chat template): ")
    assert "exceed the model's 2048 positions" in reply["error"]["message"]


@pytest.mark.e2e
def test_completion_shape_and_the_chat_route(server: str) -> None:
    code, reply = _post(f"{server}/completions", {"model": "tiny", "prompt": ["a b", "c"], "max_tokens": 3,
                                                  "temperature": 0, "logprobs": 2})
    assert code == 200 and len(reply["choices"]) == 2 and reply["usage"]["prompt_tokens"] > 0
    lp = reply["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    for top, chosen in zip(lp["top_logprobs"], lp["token_logprobs"], strict=True):
        assert len(top) == 2 and max(top.values()) == pytest.approx(chosen)  # greedy: the chosen token is the top
    assert "".join(lp["tokens"]) == reply["choices"][0]["text"]
    # The SFT rationale client speaks to the same server.
    text = EndpointClient(server, "tiny", timeout=30).chat([{"role": "user", "content": "hi"}], temperature=0)
    assert isinstance(text, str)


@pytest.mark.e2e
def test_stop_strings_and_seeded_sampling(server: str) -> None:
    body = {"model": "tiny", "prompt": "Query: red shoes", "max_tokens": 6, "temperature": 0, "logprobs": 1}
    full = _post(f"{server}/completions", body)[1]["choices"][0]
    tokens = full["logprobs"]["tokens"]
    stop = tokens[2].strip() or tokens[2]
    cut = _post(f"{server}/completions", {**body, "stop": [stop]})[1]["choices"][0]
    assert cut["finish_reason"] == "stop" and full["text"].startswith(cut["text"]) and stop not in cut["text"]
    sampled = {**body, "temperature": 1.0, "seed": 7}
    first, again = (_post(f"{server}/completions", sampled)[1]["choices"][0]["text"] for _ in range(2))
    assert first == again


@pytest.mark.e2e
def test_a_refused_request_stops_annotation_with_one_line(server: str, tmp_path: Path, capsys) -> None:
    # The tiny model has 2048 positions: a prompt of ~200 tokens plus 2040 new tokens does not fit.
    code = main(["annotate", "--teacher", f"openai:{server},model=tiny", "--data", "synthetic:4", "--profile", "tiny",
                 "--set", "annotate.split=all", "--set", "teacher.max_new_tokens=2040", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the lines above are the progress bar's
    assert code == 2 and err.startswith("distillery annotate: error: http://127.0.0.1:"), err
    assert "request refused (HTTP 400: prompt[0]:" in err and "exceed the model's 2048 positions" in err, err
