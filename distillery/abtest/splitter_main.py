"""The A/B splitter's app entry (the container's command); all logic is in ``distillery.abtest.splitter``.

    python -m distillery.abtest.splitter_main --split split.yaml --triton-url http://127.0.0.1:8000 \
        --port 8080 --exposure-log /var/log/splitter/exposures.jsonl --events-log /var/log/splitter/events-0.jsonl

It ships inside the package (the splitter image runs it from the installed wheel, ``distillery-splitter`` is
the same ``main``), so the launcher of ``distillery abtest`` and the container start the same module.

``--port 0`` binds a free port; the line ``SPLITTER_READY http://HOST:PORT`` is printed once listening.
The admin token is read from ``$SPLITTER_ADMIN_TOKEN`` (a Kubernetes Secret), never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from distillery.abtest.protocol import Limits
from distillery.abtest.splitter import make_state, serve_forever


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--split", required=True, help="split file (YAML/JSON); re-read when it changes")
    p.add_argument("--triton-url", required=True, help="Triton HTTP (host:port or URL) or gRPC address")
    p.add_argument("--client", choices=("relevance", "aiohttp"), default="relevance",
                   help="relevance: the serving RelevanceClient (HTTP/gRPC, thread pool); "
                        "aiohttp: Triton's HTTP API on the event loop")
    p.add_argument("--protocol", choices=("http", "grpc"), default="http", help="(--client relevance) HTTP or gRPC")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--exposure-log", help="JSONL exposure log path (off if absent)")
    p.add_argument("--events-log", help="JSONL log of POST /events (off if absent); event ids already in the "
                                        "events*.jsonl files beside it count as seen")
    p.add_argument("--max-events", type=int, default=10_000, help="events per POST /events body")
    p.add_argument("--poll-s", type=float, default=1.0, help="split-file check interval")
    p.add_argument("--max-items", type=int, default=200)
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = make_state(args.split, args.triton_url, client=args.client, protocol=args.protocol,
                       exposure_log=args.exposure_log, admin_token=os.environ.get("SPLITTER_ADMIN_TOKEN", ""),
                       poll_s=args.poll_s,
                       limits=Limits(max_body_bytes=args.max_body_bytes, max_items=args.max_items),
                       events_log=args.events_log)
    state.max_events = args.max_events
    asyncio.run(serve_forever(state, args.host, args.port))


if __name__ == "__main__":
    main()
