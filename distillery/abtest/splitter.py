"""The A/B traffic splitter: an aiohttp service in front of Triton.

Endpoints
- ``POST /v1/relevance`` ``{user_id, query, items}`` → ``{request_id, arm, served_by, fallback, scores,
  ranking, order, latency_ms}``; the arm is sticky per user (see :mod:`arms`); a failing arm's users are
  served by the champion, and the failure is counted against the arm (requests outcome ``fallback``; the
  exposure record says ``fallback``, which the gate counts as the arm's error);
- ``POST /events``: click/conversion events, JSON Lines, idempotent by ``event_id`` (:mod:`events`) →
  ``{accepted, duplicates}``;
- ``GET /metrics`` Prometheus text; ``GET /ready`` 200 when the champion answers (or, without it, every arm
  that carries traffic): a failing or absent challenger is failed over and never takes the champion's
  traffic out of service; ``GET /healthz`` liveness;
- ``GET /admin/split``; ``PUT /admin/split`` (a whole split) and ``POST /admin/weights``
  (``{"weights": {arm: percent}}``), bearer-token protected when a token is set.

The split file (YAML/JSON, e.g. a mounted ConfigMap) is re-read when its content changes; an invalid
file is refused, counted and logged, and the previous split stays in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from distillery.abtest.arms import Router, SplitConfig, SplitError, split_from_dict
from distillery.abtest.backends import BackendError, ScoringBackend
from distillery.abtest.events import BadEvents, EventStore, parse_events
from distillery.abtest.exposure import ExposureLog
from distillery.abtest.promtext import CONTENT_TYPE, Registry
from distillery.abtest.protocol import BadRequest, Limits, parse_request, ranking

log = logging.getLogger("distillery.splitter")
STATE: web.AppKey[SplitterState] = web.AppKey("state")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class SplitterMetrics:
    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter("splitter_requests_total",
                                  "Scored requests by assigned arm and outcome (ok, fallback, error).")
        self.backend_errors = r.counter("splitter_backend_errors_total", "Failed scoring calls by arm.")
        self.latency = r.histogram("splitter_request_latency_seconds", "Latency users of each arm saw.",
                                   LATENCY_BUCKETS)
        self.bad = r.counter("splitter_bad_requests_total", "Refused requests by HTTP status.")
        self.weight = r.gauge("splitter_arm_weight_percent", "Current share of users per arm.")
        self.reloads = r.counter("splitter_config_reloads_total", "Split changes by source and result.")
        self.moved = r.counter("splitter_buckets_moved_total", "Buckets (of 10,000) reassigned by split changes.")
        self.events = r.counter("splitter_events_total", "Feedback events by result (accepted, duplicate).")

    def set_weights(self, split: SplitConfig) -> None:
        self.weight.clear()
        for a in split.arms:
            self.weight.set(a.weight, arm=a.name)


@dataclass
class SplitterState:
    """Everything a running splitter holds; handlers get it from ``app["state"]``."""

    router: Router
    backend: ScoringBackend
    exposure: ExposureLog = field(default_factory=lambda: ExposureLog(None))
    limits: Limits = field(default_factory=Limits)
    split_path: Path | None = None
    admin_token: str = ""
    poll_s: float = 1.0
    metrics: SplitterMetrics = field(default_factory=SplitterMetrics)
    events: EventStore = field(default_factory=lambda: EventStore(None))
    max_events: int = 10_000
    """Events per ``POST /events`` body."""
    _file_digest: str = ""

    def apply(self, split: SplitConfig, source: str) -> int:
        moved = self.router.update(split)
        self.metrics.reloads.inc(source=source, result="ok")
        self.metrics.moved.inc(moved)
        self.metrics.set_weights(split)
        log.info("split from %s: %s (moved %d buckets)", source, split.weights, moved)
        return moved

    def reload_file(self) -> bool:
        """Re-read the split file if its content changed; True if a new split was applied."""
        if self.split_path is None:
            return False
        try:
            raw = self.split_path.read_bytes()
        except OSError as exc:
            log.warning("split file %s unreadable: %s", self.split_path, exc)
            return False
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._file_digest:
            return False
        self._file_digest = digest
        try:
            split = split_from_dict(yaml.safe_load(raw), str(self.split_path))
        except (SplitError, yaml.YAMLError) as exc:
            # A half-edited or wrong file must not take the service down: keep serving the last good split.
            self.metrics.reloads.inc(source="file", result="invalid")
            log.error("split file %s refused, keeping the current split: %s", self.split_path, exc)
            return False
        self.apply(split, "file")
        return True


def _json_error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


async def _serve_arm(state: SplitterState, arm_name: str, query: str,
                     texts: list[str]) -> tuple[list[float], str, bool]:
    """Scores from the user's arm, or from the champion if the arm fails (the failure counts against the arm)."""
    split = state.router.split
    arm = split.arm(arm_name)
    try:
        return await state.backend.score(arm, query, texts, split.timeout_s), arm_name, False
    except BackendError as exc:
        state.metrics.backend_errors.inc(arm=arm_name)
        if arm_name == split.champion:
            raise
        log.warning("arm %s failed, serving its user from the champion: %s", arm_name, exc)
    champ = split.arm(split.champion)
    try:
        return await state.backend.score(champ, query, texts, split.timeout_s), champ.name, True
    except BackendError:
        state.metrics.backend_errors.inc(arm=champ.name)
        raise


async def relevance(request: web.Request) -> web.Response:
    state = request.app[STATE]
    t0 = time.perf_counter()
    try:
        if request.content_length is not None and request.content_length > state.limits.max_body_bytes:
            raise BadRequest(f"body of {request.content_length} bytes > limit {state.limits.max_body_bytes}", 413)
        req = parse_request(await request.read(), state.limits)
    except BadRequest as exc:
        state.metrics.bad.inc(status=str(exc.status))
        return _json_error(exc.status, str(exc))
    except web.HTTPRequestEntityTooLarge:
        state.metrics.bad.inc(status="413")
        return _json_error(413, f"body larger than the limit of {state.limits.max_body_bytes} bytes")
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    arm = state.router.assign(req.user_id).name
    try:
        scores, served_by, fallback = await _serve_arm(state, arm, req.query, req.item_texts)
    except BackendError as exc:
        latency = time.perf_counter() - t0
        state.metrics.requests.inc(arm=arm, outcome="error")
        state.metrics.latency.observe(latency, arm=arm)
        return _json_error(503, f"no arm could score the request: {exc}", arm=arm, request_id=request_id)
    order = ranking(scores)
    latency = time.perf_counter() - t0
    state.metrics.requests.inc(arm=arm, outcome="fallback" if fallback else "ok")
    state.metrics.latency.observe(latency, arm=arm)
    shown = [req.item_ids[i] for i in order]
    state.exposure.write({"ts": time.time(), "request_id": request_id, "user_id": req.user_id, "arm": arm,
                          "served_by": served_by, "fallback": fallback, "items": shown,
                          "latency_ms": round(latency * 1000, 3)})
    return web.json_response({"request_id": request_id, "arm": arm, "served_by": served_by, "fallback": fallback,
                              "scores": scores, "order": order, "ranking": shown,
                              "latency_ms": round(latency * 1000, 3)})


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(body=state.metrics.registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})


async def ready(request: web.Request) -> web.Response:
    """Ready when every request can be answered: the champion answers (every other arm fails over to it),
    or, with the champion down, every arm carrying traffic answers. Other arms are not probed: a slow
    challenger must not make the probe time out (Flagger/Argo keep the stable service serving whatever the
    canary does)."""
    state = request.app[STATE]
    split = state.router.split
    arms = {split.champion: await state.backend.ready(split.arm(split.champion), split.timeout_s)}
    ok = arms[split.champion]
    if not ok:
        serving = [a for a in split.arms if a.weight > 0 and a.name != split.champion]
        answers = await asyncio.gather(*(state.backend.ready(a, split.timeout_s) for a in serving))
        arms.update({a.name: r for a, r in zip(serving, answers, strict=True)})
        ok = split.arm(split.champion).weight == 0 and bool(serving) and all(answers)
    return web.json_response({"ready": ok, "champion": split.champion, "arms": arms}, status=200 if ok else 503)


async def events(request: web.Request) -> web.Response:
    """Click/conversion events (JSON Lines); a replayed ``event_id`` is acknowledged, not counted again."""
    state = request.app[STATE]
    if not state.events.enabled:
        return _json_error(404, "event collection is off (start the splitter with --events-log)")
    try:
        batch = parse_events(await request.read(), state.max_events)
    except BadEvents as exc:
        state.metrics.bad.inc(status="400")
        return _json_error(400, str(exc))
    accepted, duplicates = state.events.add(batch, lambda uid: state.router.assign(uid).name)
    state.metrics.events.inc(accepted, result="accepted")
    state.metrics.events.inc(duplicates, result="duplicate")
    return web.json_response({"accepted": accepted, "duplicates": duplicates})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


def _authorised(state: SplitterState, request: web.Request) -> bool:
    return not state.admin_token or request.headers.get("Authorization", "") == f"Bearer {state.admin_token}"


async def get_split(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({**state.router.split.to_dict(), "buckets": state.router.table.counts()})


async def put_split(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorised(state, request):
        return _json_error(401, "admin endpoint: missing or wrong bearer token")
    try:
        body = json.loads(await request.read())
        if request.path.endswith("/weights"):
            body = _with_weights(state.router.split, body)
        split = split_from_dict(body, "admin request")
    except (json.JSONDecodeError, SplitError, ValueError) as exc:
        state.metrics.reloads.inc(source="admin", result="invalid")
        return _json_error(400, str(exc))
    moved = state.apply(split, "admin")
    return web.json_response({**split.to_dict(), "moved_buckets": moved})


def _with_weights(split: SplitConfig, body: Any) -> dict[str, Any]:
    weights = body.get("weights") if isinstance(body, dict) else None
    if not isinstance(weights, dict) or set(weights) != {a.name for a in split.arms}:
        raise SplitError(f"weights: give a weight for each arm {[a.name for a in split.arms]}, got {weights!r}")
    d = split.to_dict()
    for a in d["arms"]:
        a["weight"] = weights[a["name"]]
    return d


async def _watch(app: web.Application) -> Any:
    state = app[STATE]

    async def loop() -> None:
        while True:
            await asyncio.sleep(state.poll_s)
            state.reload_file()

    task = asyncio.create_task(loop()) if state.split_path else None
    yield
    if task:
        task.cancel()
    await state.backend.close()
    state.exposure.close()
    state.events.close()


def build_app(state: SplitterState) -> web.Application:
    """The aiohttp application; bodies above the limit are refused by aiohttp itself too."""
    app = web.Application(client_max_size=state.limits.max_body_bytes)
    app[STATE] = state
    state.metrics.set_weights(state.router.split)
    if state.split_path is not None:
        state._file_digest = hashlib.sha256(state.split_path.read_bytes()).hexdigest()
    app.add_routes([web.post("/v1/relevance", relevance), web.post("/events", events),
                    web.get("/metrics", metrics), web.get("/ready", ready),
                    web.get("/healthz", healthz), web.get("/admin/split", get_split),
                    web.put("/admin/split", put_split), web.post("/admin/weights", put_split)])
    app.cleanup_ctx.append(_watch)
    return app


def make_state(split_path: str | Path, triton_url: str, *, client: str = "relevance", protocol: str = "http",
               exposure_log: str | None = None, admin_token: str = "", poll_s: float = 1.0,
               limits: Limits | None = None, backend: ScoringBackend | None = None,
               events_log: str | None = None) -> SplitterState:
    """A splitter over Triton (or an injected backend) from a split file.

    ``client="relevance"`` (default) goes through ``distillery.serving.client.RelevanceClient`` (HTTP or
    gRPC) on a thread pool; ``client="aiohttp"`` calls Triton's HTTP API on the event loop, without
    threads. Both are measured side by side by ``benchmarks/abtest_load.py``.
    """
    from distillery.abtest.arms import load_split
    from distillery.abtest.backends import TritonBackend, TritonHttpBackend

    split = load_split(split_path)
    if client not in ("aiohttp", "relevance"):
        raise ValueError(f"client={client!r}: expected aiohttp or relevance")
    if client == "aiohttp" and protocol != "http":
        raise ValueError("the aiohttp client speaks HTTP only; use client='relevance' for gRPC")
    be = backend or (TritonHttpBackend(triton_url) if client == "aiohttp"
                     else TritonBackend(triton_url, protocol=protocol, timeout_s=split.timeout_s))
    return SplitterState(Router(split), be, ExposureLog(exposure_log), limits or Limits(), Path(split_path),
                         admin_token, poll_s, events=EventStore(events_log))


async def start(state: SplitterState, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start serving in the running loop; returns the runner (``await runner.cleanup()``) and the base URL."""
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, f"http://{host}:{bound}"


async def serve_forever(state: SplitterState, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT; prints ``SPLITTER_READY <url>`` once listening (a parent waits for that line)."""
    runner, url = await start(state, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # Kubernetes sends SIGTERM: drain and exit cleanly
        loop.add_signal_handler(sig, stop.set)
    print(f"SPLITTER_READY {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("splitter stopped")
