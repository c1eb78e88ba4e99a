"""``distillery serve``: a real Triton server on a model repository, until Ctrl-C.

    distillery serve --setup-env                     # once: the python-backend stub's environment
    distillery serve --repo /tmp/repo --http-port 8000 --grpc-port 8001
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_serve_cmd(args: argparse.Namespace) -> int:
    from distillery.serving.server import ServerError, TritonServer
    from distillery.serving.stubenv import StubEnvError, create_env
    from distillery.stages.deploy import serve

    if args.setup_env:
        print(f"python-backend environment ready: {create_env(quiet=False)}")
        if not args.repo:
            return 0
    if not args.repo:
        print("distillery serve: error: --repo is required", file=sys.stderr)
        return 2
    for flag, port in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port),
                       ("--metrics-port", args.metrics_port)):
        if not 0 <= port <= 65535:
            print(f"distillery serve: error: {flag} {port}: must be a TCP port in [0, 65535] (0: a free one)",
                  file=sys.stderr)
            return 2
    if Path(args.repo).exists() and not Path(args.repo).is_dir():
        print(f"distillery serve: error: --repo {args.repo}: not a directory (a model repository written by "
              "distillery export)", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM (a pod stopping) both stop Triton in order.  Installed explicitly because a
    # process started in the background inherits SIGINT as ignored, and Python then never raises.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)

    def ready(server: TritonServer) -> None:
        print(f"Triton ready — HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}"
              "  (Ctrl-C stops)", flush=True)

    try:
        return serve(args.repo, args.http_port, args.grpc_port, args.metrics_port,
                     startup_timeout_s=args.startup_timeout, ready=ready)
    except (ServerError, StubEnvError) as exc:
        print(f"distillery serve: error: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model repository with Triton (the binary from nvidia-pytriton)")
    p.add_argument("--repo", help="model repository directory (written by distillery export)")
    p.add_argument("--http-port", type=int, default=8000, help="0: a free port")
    p.add_argument("--grpc-port", type=int, default=8001, help="0: a free port")
    p.add_argument("--metrics-port", type=int, default=8002, help="0: a free port")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for readiness")
    p.add_argument("--setup-env", action="store_true",
                   help="create the python-backend stub's environment (numpy<2; needs PyPI) and exit unless --repo")
    p.set_defaults(handler=run_serve_cmd)
