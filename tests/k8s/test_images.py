"""The Dockerfiles: pinned bases, pinned packages that agree with pyproject.toml, non-root users, an
entry point each, and tags from the one image constant (distillery/images.py)."""

from __future__ import annotations

import re
import tomllib

import pytest

from distillery import __version__
from distillery.images import RUNTIMES, image
from tests.k8s.conftest import REPO

DOCKERFILES = {r: REPO / "images" / r / "Dockerfile" for r in RUNTIMES}


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = deps["dependencies"] + [d for extra in deps["optional-dependencies"].values() for d in extra]
    out = {}
    for spec in specs:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", spec)
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dockerfile_is_pinned_non_root_with_an_entry_point(runtime: str) -> None:
    text = DOCKERFILES[runtime].read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    name, _, tag = base.rpartition(":")
    assert name and re.search(r"\d+\.\d+", tag) and "latest" not in tag, f"{runtime}: unpinned base {base}"
    (user,) = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert not user.startswith(("0", "root")), f"{runtime}: runs as {user}"
    assert re.search(r"^ENTRYPOINT \[", text, flags=re.M), f"{runtime}: no exec-form ENTRYPOINT"
    assert f"print(image(\"{runtime}\"))" in text, f"{runtime}: the build command must tag from distillery.images"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_installed_packages_are_pinned_like_pyproject(runtime: str) -> None:
    pins = pyproject_pins()
    text = DOCKERFILES[runtime].read_text()
    for spec in re.findall(r'"([A-Za-z0-9_.-]+(?:\[[^\]]*\])?[=<>!~][^"]*)"', text):
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)$", spec)
        assert m, f"{runtime}: {spec!r} is not pinned with =="
        pkg, version = m.group(1).lower(), m.group(3)
        if pkg in pins:
            assert version == pins[pkg], f"{runtime}: {pkg}=={version}, pyproject.toml pins {pins[pkg]}"


def test_serving_image_is_nvidias_triton_py3() -> None:
    text = DOCKERFILES["serving"].read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$", text, flags=re.M)
    assert "tokenizers==" in text and "transformers==" in text


def test_image_tags_derive_from_the_version() -> None:
    for runtime in RUNTIMES:
        assert image(runtime).endswith(f"/distillery-{runtime}:{__version__}")
