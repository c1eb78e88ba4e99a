"""The engine backends' shared rules (label mapping, where the label is read, where an answer ends), their spec
parsing, and their one-line errors (a malformed spec, an unreachable server, vLLM not installed)."""

from __future__ import annotations

import math
import socket
from collections.abc import Hashable

import pytest

from distillery.cli import main
from distillery.config import load_config
from distillery.data.schema import Pair
from distillery.teacher.engine_labels import label_probs_from_top, settle, token_text
from distillery.teacher.engine_teacher import Completion, EngineTeacher
from distillery.teacher.openai_backend import parse_spec
from distillery.teacher.protocol import BACKENDS, open_teacher
from distillery.teacher.vllm_backend import parse_spec as parse_vllm_spec

CLASSES = [[11, 21], [12, 22], [13, 23]]  # each class word's first token with and without a leading space


def test_label_probs_sum_each_class_tokens_and_renormalise() -> None:
    top = {11: math.log(0.5), 21: math.log(0.1), 12: math.log(0.2), 13: math.log(0.1), 99: math.log(0.05)}
    probs, covered = label_probs_from_top(top, CLASSES)
    assert covered
    assert probs == pytest.approx([0.6 / 0.9, 0.2 / 0.9, 0.1 / 0.9])


def test_an_absent_class_gets_the_smallest_top_k_probability() -> None:
    # The absent class's tokens are below every top-K entry, so the K-th probability bounds it from above.
    top = {11: math.log(0.6), 12: math.log(0.3), 99: math.log(0.05)}
    probs, covered = label_probs_from_top(top, CLASSES)
    assert not covered
    assert probs == pytest.approx([0.6 / 0.95, 0.3 / 0.95, 0.05 / 0.95])


def test_no_class_in_the_top_k_is_uniform_and_text_keys_work() -> None:
    assert label_probs_from_top({99: -0.1}, CLASSES) == ([1 / 3, 1 / 3, 1 / 3], False)
    probs, covered = label_probs_from_top({" Exact": -0.2, " Partial": -2.0, " Irrelevant": -3.0},
                                          [[" Exact", "Exact"], [" Partial", "Partial"], [" Irrelevant"]])
    assert covered and probs[0] > probs[1] > probs[2] and sum(probs) == pytest.approx(1.0)


def test_settle_reads_after_the_models_label_and_ends_at_the_next_newline() -> None:
    texts = ["Reason", "ing", ":", " fine", "\n", "Label", ":", " Exact", "\n", "junk"]
    s = settle(texts, stopped=False)
    assert (s.label_at, s.length, s.steps, s.forced) == (7, 9, 9, False)
    # A newline as the label word itself does not end the answer (the decoder reads that position first).
    s = settle(["Label", ":", "\n", " Exact", "\n"], stopped=False)
    assert (s.label_at, s.length) == (2, 5)


def test_settle_forces_a_label_when_none_was_written() -> None:
    s = settle(["Reasoning", ":", " no", " label"], stopped=True)
    assert (s.label_at, s.length, s.steps, s.forced) == (None, 4, 5, True)  # the stop token is a decoding step
    s = settle(["x"] * 5 + ["Label", ":"], stopped=False)  # "Label:" at the token limit: read after it, not forced
    assert (s.label_at, s.length, s.forced) == (7, 7, False)


def test_backends_are_registered_where_teachers_are_opened() -> None:
    with pytest.raises(ValueError, match="not an http"):
        open_teacher("openai:ftp://x", load_config("tiny"))
    assert {"openai", "vllm"} <= set(BACKENDS)


@pytest.mark.parametrize(("spec", "message"), [
    ("127.0.0.1:8000/v1,model=m", "is not an http"),
    ("http://h:1/v1,model=m,colour=red", "unknown key 'colour'"),
    ("http://h:1/v1,model=m,concurrency=many", "concurrency='many' is not an integer"),
    ("http://h:1/v1,model=m,concurrency=0", r"teacher.endpoint_concurrency=0: must be in \[1, 1024\]"),
    # patience is the annotation client's only retry limit: 0 would retry a dead server forever
    ("http://h:1/v1,model=m,patience=0", r"teacher.endpoint_patience=0.0: must be in \(0.0, 86400.0\]"),
    ("http://h:1/v1,model", "'model' is not key=value"),
    ("http://h:1/v1", "no model=NAME"),
])
def test_a_malformed_spec_is_one_error_naming_it(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_spec(spec, load_config("tiny"))
    assert str(err.value).startswith(f"--teacher openai:{spec}: ") and "\n" not in str(err.value)


def test_spec_options_override_the_config() -> None:
    spec = parse_spec("http://127.0.0.1:9/v1/,model=m,tokenizer=tiny,concurrency=3,patience=1.5,logprobs=7",
                      load_config("tiny"))
    t = spec.cfg.teacher
    assert (spec.base_url, spec.tokenizer, t.endpoint_model, t.endpoint_concurrency, t.endpoint_patience,
            t.endpoint_logprobs) == ("http://127.0.0.1:9/v1", "tiny", "m", 3, 1.5, 7)
    vspec = parse_vllm_spec("/models/t,tensor_parallel=2,logprobs=7,label_logprobs=9", load_config("tiny"))
    assert (vspec.model, vspec.tokenizer, vspec.tensor_parallel, vspec.gpu_memory) == ("/models/t", "/models/t", 2, 0.9)
    assert (vspec.cfg.teacher.endpoint_logprobs, vspec.cfg.teacher.endpoint_label_logprobs) == (7, 9)


@pytest.mark.parametrize(("spec", "message"), [
    ("/models/t,tp=2", "unknown key 'tp'"),
    ("/models/t,tensor_parallel=two", "tensor_parallel='two' is not an integer"),
    ("/models/t,gpu_memory=lots", "gpu_memory='lots' is not a number"),
    ("/models/t,gpu_memory=1.5", r"gpu_memory=1.5: must be in \(0, 1\]"),
    ("/models/t,tensor_parallel=0", "tensor_parallel=0: must be at least 1"),
    # the config's own check applies to a spec value too (label_logprobs=0 could never read a label)
    ("/models/t,label_logprobs=0", r"teacher.endpoint_label_logprobs=0: must be in \[1, "),
    (",logprobs=3", "no model"),
])
def test_a_malformed_vllm_spec_is_one_error_naming_the_key(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_vllm_spec(spec, load_config("tiny"))
    assert str(err.value).startswith(f"--teacher vllm:{spec}: ") and "\n" not in str(err.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _annotate_error(teacher: str, tmp_path, capsys, *extra: str) -> str:
    code = main(["annotate", "--teacher", teacher, "--data", "synthetic:8", "--profile", "tiny", "--set",
                 "annotate.split=all", "--out", str(tmp_path / "ann"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    return err


def test_unreachable_server_is_one_line_after_the_patience_window(tmp_path, capsys) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    err = _annotate_error(f"openai:{url},model=tiny,patience=0.6", tmp_path, capsys)
    assert err.startswith("distillery annotate: error: --teacher openai:") and "unreachable" in err
    assert "is the server running" in err


def test_vllm_missing_is_one_line(tmp_path, capsys) -> None:
    err = _annotate_error("vllm:/models/teacher", tmp_path, capsys)
    assert "the vllm package is not installed" in err and "openai:URL" in err


def test_serve_on_a_busy_port_is_one_line_before_loading(capsys) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["teacher", "serve", "--model", "tiny", "--profile", "tiny", "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (f"distillery teacher serve: error: --host 127.0.0.1 --port {port}: cannot listen "
                                 "there (Address already in use)")


def test_rate_limit_spaces_requests_across_threads(monkeypatch) -> None:
    from distillery.teacher import openai_http

    clock = {"now": 100.0}
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock["now"] += s

    monkeypatch.setattr(openai_http.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(openai_http.time, "sleep", sleep)
    limiter = openai_http.RateLimiter(4.0)
    for _ in range(5):
        limiter.wait()
    assert slept == pytest.approx([0.25] * 4)  # the first goes at once, then one every 1/rate seconds
    openai_http.RateLimiter(0.0).wait()
    assert len(slept) == 4


class ScriptedEngine(EngineTeacher):
    """A fake engine (no server can be told to drop logprobs from one reply): the answer's top-K misses classes,
    and the wider one-token re-read comes back without logprobs."""

    def __init__(self, answer: str, top_at_label: dict[Hashable, float]) -> None:
        super().__init__("tiny", load_config("tiny"), label_logprobs=20)
        self.ids = list(self.tok(answer, add_special_tokens=False)["input_ids"])
        self.top_at_label = top_at_label
        self.calls: list[int] = []

    def complete(self, prompts: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        self.calls.append(logprobs)
        if max_tokens == 1:  # the re-read: a reply without logprobs
            return [Completion(self.ids[:1], [token_text(self.tok, self.ids[0])], [], False) for _ in prompts]
        texts = [token_text(self.tok, i) for i in self.ids]
        label_at = settle(texts, stopped=True).label_at
        assert label_at is not None
        top = [{i: 0.0} for i in self.ids]
        top[label_at] = self.top_at_label
        return [Completion(self.ids, texts, top, True) for _ in prompts]


def test_a_re_read_without_logprobs_keeps_the_partial_distribution() -> None:
    engine = ScriptedEngine("Reasoning: fine\nLabel: Exact\n", {})
    first = engine.classes[0][0]
    engine.top_at_label = {first: math.log(0.6), 99999: math.log(0.3)}  # one class seen: not covered
    partial, covered = label_probs_from_top(engine.top_at_label, engine.classes)
    assert not covered
    [answer] = engine.answer([Pair("q1", "spa kit", "i1", title="spa kit")])
    assert engine.calls == [engine.cfg.endpoint_logprobs, 20]  # the wider re-read was asked, and came back empty
    assert answer.label_probs == pytest.approx(partial) and answer.label == engine.label_set.classes[0]


def test_an_http_client_without_any_retry_limit_is_refused() -> None:
    from distillery.teacher.openai_http import HttpJson

    with pytest.raises(ValueError, match="retried forever"):
        HttpJson("http://127.0.0.1:9/v1", retries=None, patience=0.0)
