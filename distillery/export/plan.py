"""The TensorRT plan step: ``student_trt/N/model.plan`` built from the plain graph beside it, on a GPU node.

A TensorRT engine loads only in the TensorRT version that built it, so the plan is built inside the image that
serves it (the project's serving image, FROM :data:`~distillery.export.tensorrt.TRITON_IMAGE`, whose ``trtexec``
is the TensorRT of its Triton backend): the end-to-end pipeline's "Build the TensorRT plan" step
(``tensorrt_plan=True``), or by hand in that image on a GPU node::

    python -m distillery.export.plan --repo REPO --out REPO_WITH_PLANS
    python -m distillery.export.plan --repo REPO --print       # only print the trtexec commands (any machine)

Each version is built with the optimisation profile its ``config.pbtxt`` was rendered from (the manifest's
``tensorrt`` entry, written by :func:`distillery.export.repository.write_version`), so engine and config
agree; a version that already has its plan is kept (``--force`` rebuilds).  From Python::

    from distillery.export.plan import build_plans
    build_plans("/tmp/repo", "/tmp/repo-gpu")          # -> ["1"], the versions built
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from distillery.export.repository import MANIFEST, VARIANT_MODELS, read_manifest
from distillery.export.tensorrt import TRTEXEC, TensorRTUnavailable, TrtProfile, trtexec_command

_TRT_VERSION = re.compile(r"TensorRT version:\s*([0-9][\w.]*)")


def find_trtexec(explicit: str | None = None) -> str:
    """``explicit``, else ``trtexec`` on ``PATH``, else NVIDIA's image location; an error says where to run."""
    for candidate in (explicit, shutil.which("trtexec"), TRTEXEC):
        if candidate and Path(candidate).is_file():
            return candidate
    raise TensorRTUnavailable(f"no trtexec here (looked on PATH and at {TRTEXEC}): build the plan on a GPU node "
                              "in the serving image, or print the commands with --print")


def plan_commands(repo: str | Path, trtexec: str = "trtexec", force: bool = False) -> dict[str, list[str]]:
    """Version → the ``trtexec`` command that builds its plan, for every version whose plan is missing."""
    root = Path(repo)
    versions = {v: e["tensorrt"] for v, e in read_manifest(root, required=True)["versions"].items() if "tensorrt" in e}
    if not versions:
        raise ValueError(f"{root}: no version has the tensorrt variant (export with export.variants including "
                         "tensorrt, e.g. --set export.variants=[python,tensorrt])")
    out = {}
    for version, trt in sorted(versions.items(), key=lambda kv: int(kv[0])):
        onnx, plan = (root / VARIANT_MODELS["tensorrt"] / version / f for f in ("model.onnx", "model.plan"))
        if not onnx.is_file():
            raise FileNotFoundError(f"{onnx}: version {version}'s plain graph is missing")
        if force or not plan.is_file():
            out[version] = trtexec_command(onnx, plan, TrtProfile(**trt["profile"]), fp16=True, trtexec=trtexec)
    return out


def _run(version: str, cmd: list[str]) -> str:
    """Run one build; the TensorRT version it reports, or an error naming the version and trtexec's last lines."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    log = done.stdout + done.stderr
    plan = Path(cmd[2].removeprefix("--saveEngine="))
    if done.returncode != 0 or not plan.is_file() or plan.stat().st_size == 0:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise RuntimeError(f"version {version}: trtexec failed (exit {done.returncode}) building {plan}:\n{tail}")
    found = _TRT_VERSION.search(log)
    return found.group(1) if found else "unknown"


def build_plans(repo: str | Path, out: str | Path | None = None, trtexec: str | None = None,
                force: bool = False) -> list[str]:
    """Copy ``repo`` to ``out`` (default: in place) and build every missing plan there; returns the versions
    built.  Each manifest entry's ``tensorrt.built`` records the TensorRT version and the command."""
    from tqdm.auto import tqdm

    src, dst = Path(repo), Path(out or repo)
    if dst != src:
        shutil.copytree(src, dst, dirs_exist_ok=True)
    exe = find_trtexec(trtexec)
    commands = plan_commands(dst, exe, force)
    manifest = read_manifest(dst, required=True)
    for version, cmd in tqdm(commands.items(), desc="tensorrt plans", unit="plan"):
        manifest["versions"][version]["tensorrt"]["built"] = {"tensorrt": _run(version, cmd), "command": cmd}
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return list(commands)


def _printed_trtexec(explicit: str | None) -> str:
    """The trtexec a printed command names: the one :func:`find_trtexec` would run, else the serving image's."""
    try:
        return find_trtexec(explicit)
    except TensorRTUnavailable:
        return explicit or TRTEXEC  # printed on a machine without TensorRT, for the serving image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the TensorRT plan of every student_trt version of a repository.")
    p.add_argument("--repo", required=True, help="the model repository distillery export wrote")
    p.add_argument("--out", help="where the repository with its plans goes (default: --repo, in place)")
    p.add_argument("--trtexec", help=f"the trtexec binary (default: on PATH, else {TRTEXEC})")
    p.add_argument("--force", action="store_true", help="rebuild plans that exist")
    p.add_argument("--print", action="store_true", help="print the trtexec commands and exit")
    args = p.parse_args(argv)
    try:
        if args.print:
            for version, cmd in plan_commands(args.repo, _printed_trtexec(args.trtexec), args.force).items():
                print(f"# version {version}\n{' '.join(cmd)}")
            return 0
        built = build_plans(args.repo, args.out, args.trtexec, args.force)
    except (TensorRTUnavailable, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, TensorRTUnavailable) else 1
    print(f"built {len(built)} plan(s): versions {', '.join(built) or 'none (all present)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
