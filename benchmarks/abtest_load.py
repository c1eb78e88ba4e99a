"""Load test: the splitter under a bounded load from a second process (wrk) on loopback, and its
latency overhead over calling Triton directly, measured in the same run.

One tiny student is served by a real Triton (python backend, onnxruntime); the splitter runs as its own
process with both arms on that model, so the difference is the splitter alone (HTTP parse, hashing,
the Triton call, ranking, the exposure log, metrics). Two splitter processes run: one with its default
client (the serving issue's blocking ``RelevanceClient`` on a thread pool), one with the aiohttp client
on the event loop. wrk (Debian package) drives a fixed number of connections (closed loop: bounded
load) against each splitter's ``/v1/relevance`` and against Triton's ``/v2/models/relevance_v1/infer``
with the same 10 (query, item) pairs per request; the three targets run alternately, ``--rounds`` times.

    apt-get install -y wrk
    nice -n 5 .venv/bin/python benchmarks/abtest_load.py --model /tmp/ft/model --seconds 15 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from distillery.abtest.arms import Arm, SplitConfig, save_split
from distillery.abtest.local import fetch_text, splitter_process

QUERY = "thai massage open late near sanlitun"
ITEMS = [f"Golden Thai Massage {i} | spa | open late; {i} km from Sanlitun" for i in range(10)]
TARGETS = ("triton", "splitter (RelevanceClient)", "splitter (aiohttp client)")
LUA = """
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local body = string.gsub(template, "USER", "load-" .. counter)
  return wrk.format(nil, path, nil, body)
end
"""


def tiny_student(out: Path) -> Path:
    from distillery.config import StudentConfig
    from distillery.data.schema import THREE_CLASS
    from distillery.student.model import StudentMeta, build_student

    scfg = StudentConfig(model="tiny")
    tokenizer, model = build_student(scfg, THREE_CLASS, seed=0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    StudentMeta("3class", list(THREE_CLASS.classes), list(scfg.item_fields), 64).save(out)
    return out


def lua_script(path: str, body: dict[str, object], where: Path) -> Path:
    f = where / (path.strip("/").replace("/", "_") + ".lua")
    f.write_text(f"path = {json.dumps(path)}\ntemplate = {json.dumps(json.dumps(body))}\n" + LUA)
    return f


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {label} in wrk output:\n{out}")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return {"p50": ms("50%"), "p99": ms("99%"), "rps": reqs / seconds, "requests": reqs, "errors": errors}


def measure(model: Path, tmp: Path, seconds: int, rounds: int, connections: int
            ) -> tuple[dict[str, list[dict[str, float]]], str]:
    """Triton + splitter up, wrk against each alternately; returns the rounds and the splitter's /metrics."""
    from distillery.export.repository import build_repository
    from distillery.serving.server import TritonServer

    build_repository(model, tmp / "repo", version=1)
    arms = (Arm("champion", "relevance_v1", "", 50), Arm("challenger", "relevance_v1", "", 50))
    save_split(SplitConfig("load", "load", "champion", arms, 5.0), tmp / "split.json")
    triton_body = {"inputs": [{"name": "QUERY", "shape": [10, 1], "datatype": "BYTES", "data": [QUERY] * 10},
                              {"name": "ITEM", "shape": [10, 1], "datatype": "BYTES", "data": ITEMS}],
                   "outputs": [{"name": "PROBS"}], "id": "USER"}
    items = [{"id": str(i), "text": t} for i, t in enumerate(ITEMS)]
    splitter_body = {"user_id": "USER", "query": QUERY, "items": items}
    results: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
    with TritonServer(tmp / "repo") as triton, \
            splitter_process(tmp / "split.json", triton.http_url, tmp / "exp_aiohttp.jsonl", tmp / "s1.log",
                             client="aiohttp") as url1, \
            splitter_process(tmp / "split.json", triton.http_url, tmp / "exp_relevance.jsonl", tmp / "s2.log",
                             client="relevance") as url2:
        scripts = {"triton": (f"http://{triton.http_url}",
                              lua_script("/v2/models/relevance_v1/infer", triton_body, tmp)),
                   "splitter (aiohttp client)": (url1, lua_script("/v1/relevance", splitter_body, tmp)),
                   "splitter (RelevanceClient)": (url2, lua_script("/v1/relevance", splitter_body, tmp))}
        for name in TARGETS:  # warm-up: thread pools, connections, onnxruntime
            run_wrk(*scripts[name], 3, connections)
        for _ in range(rounds):
            for name in TARGETS:
                results[name].append(run_wrk(*scripts[name], seconds, connections))
        return results, fetch_text(f"{url1}/metrics") + fetch_text(f"{url2}/metrics")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a saved student (default: a random-init tiny one)")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=4)
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="abtest-load-"))
    model = Path(args.model) if args.model else tiny_student(tmp / "student")
    results, metrics = measure(model, tmp, args.seconds, args.rounds, args.connections)
    exposures = 0
    for name in ("exp_aiohttp.jsonl", "exp_relevance.jsonl"):
        with open(tmp / name, encoding="utf-8") as f:
            exposures += sum(1 for _ in f)
    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} alternating rounds each (after a 3 s "
          f"warm-up of each), 10 pairs/request, model {model}\n")
    print("| target | round | requests/s | p50 ms | p99 ms | errors (non-2xx + socket) |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        for i, r in enumerate(rows):
            print(f"| {name} | {i + 1} | {r['rps']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")
    med = {n: {k: statistics.median(r[k] for r in rows) for k in ("p50", "p99")} for n, rows in results.items()}
    for name in TARGETS[1:]:
        print(f"\n{name} overhead over Triton direct (median over rounds): "
              f"p50 {med[name]['p50'] - med['triton']['p50']:+.2f} ms, "
              f"p99 {med[name]['p99'] - med['triton']['p99']:+.2f} ms")
    errs = re.findall(r'splitter_requests_total\{arm="\w+",outcome="(?:error|fallback)"\} (\d+)', metrics)
    bad = re.findall(r"splitter_bad_requests_total\{[^}]*\} (\d+)", metrics)
    print(f"splitter /metrics: error+fallback outcomes {sum(int(e) for e in errs)}, refused {sum(int(b) for b in bad)};"
          f" exposure log lines {exposures} (wrk counted "
          f"{sum(r['requests'] for t in TARGETS[1:] for r in results[t])} completed in its windows, plus warm-up)")


if __name__ == "__main__":
    main()
