"""The Dockerfiles, checked statically (Docker builds cannot run here): pinned bases and packages that agree with
pyproject.toml, non-root users, an entry point each, tags from the one image constant (distillery/images.py), and
an image that holds what its steps need: every first-party module they import (in the wheel ``pip install .``
builds from what the image copies), the package data they read, the third-party packages their modules import,
a writable HOME and caches for the non-root user, and the Triton stub environment wherever Triton runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from distillery import __version__
from distillery.images import RUNTIMES, image
from distillery.serving.resources import TEMPLATE_FILES
from distillery.serving.stubenv import ENV_VAR as STUB_ENV_VAR
from distillery.serving.stubenv import STUB_REQUIREMENTS
from tests.k8s.conftest import MANIFESTS, REPO
from tests.k8s.image_files import (
    FIRST_PARTY,
    Dockerfile,
    container_steps,
    distributions_of,
    dockerfile,
    entry_files,
    installed_distributions,
    pyproject,
    walk,
    wheel_files,
)

DOCKERFILES = {r: REPO / "images" / r / "Dockerfile" for r in RUNTIMES}
PACKAGE_SOURCES = {"pyproject.toml", "README.md", *FIRST_PARTY}
BASE_IMAGE_MODULES = {"nvcr.io/nvidia/tritonserver": {"triton_python_backend_utils"}}
"""Modules the base image provides (Triton's python backend ships its utils module)."""
DATA_READ_BY = {"distillery/serving/resources.py": [f"distillery/serving/templates/{f}" for f in TEMPLATE_FILES]}
"""Package data, by the module that reads it (through importlib.resources)."""
CACHE_VARS = {"transformers": "HF_HOME", "datasets": "HF_HOME", "torch": "TORCHINDUCTOR_CACHE_DIR",
              "matplotlib": "MPLCONFIGDIR"}
"""Where a library writes at run time (default: under HOME), by the module that writes."""
SERVER = REPO / "distillery" / "serving" / "server.py"
"""Starts the tritonserver of nvidia-pytriton, whose python-backend stub needs distillery.serving.stubenv's venv."""
KFP_MOUNTS = ("/gcs", "/minio", "/s3", "/oci")
"""KFP's launcher maps artifact URIs onto these local paths and creates folders below them in the container."""


def pyproject_pins() -> dict[str, str]:
    deps = pyproject()["project"]
    specs = deps["dependencies"] + [d for extra in deps["optional-dependencies"].values() for d in extra]
    out = {}
    for spec in specs:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", spec)
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Each image's installed package files: the wheel built from exactly what it copies (one build per copy set)."""
    built: dict[frozenset[str], set[str]] = {}
    out = {}
    for runtime in RUNTIMES:
        sources = frozenset(dockerfile(runtime).copied & PACKAGE_SOURCES)
        if sources not in built:
            built[sources] = wheel_files(set(sources), tmp_path_factory.mktemp(f"wheel-{runtime}"))
        out[runtime] = built[sources]
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
    """Pins agree with pyproject.toml; where Triton's stub runs model.py, with the stub environment's pins."""
    pins = pyproject_pins()
    if dockerfile(runtime).entrypoint[0] == "tritonserver":
        pins.update(s.lower().split("==") for s in STUB_REQUIREMENTS)  # type: ignore[arg-type]
    for spec in dockerfile(runtime).pip_specs:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)$", spec)
        assert m, f"{runtime}: {spec!r} is not pinned with =="
        pkg, version = m.group(1).lower(), m.group(3)
        if pkg in pins:
            assert version == pins[pkg], f"{runtime}: {pkg}=={version}, the project pins {pins[pkg]}"


def test_serving_image_is_nvidias_triton_py3() -> None:
    text = DOCKERFILES["serving"].read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$", text, flags=re.M)


def test_image_tags_derive_from_the_version() -> None:
    for runtime in RUNTIMES:
        assert image(runtime).endswith(f"/distillery-{runtime}:{__version__}")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_copies_only_what_pip_installs_and_removes_the_sources(runtime: str) -> None:
    df = dockerfile(runtime)
    extra = df.copied - PACKAGE_SOURCES - {"requirements-extra.txt"}
    assert not extra, f"{runtime}: copies {sorted(extra)}, which the package does not install (make it package data)"
    # The sources are removed once installed: the entry point runs the installed package and its package data.
    (workdir,) = re.findall(r"^WORKDIR\s+(\S+)$", df.text, flags=re.M)[:1]
    assert re.search(rf"pip install [^\n]*\.( |$)[^\n]*rm -rf {re.escape(workdir)}\b", df.text, flags=re.M), \
        f"{runtime}: the build directory {workdir} stays in the image"
    assert re.findall(r"^WORKDIR\s+(\S+)$", df.text, flags=re.M)[-1] != workdir


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_holds_every_module_its_steps_import(runtime: str, wheels: dict[str, set[str]]) -> None:
    reached, _ = walk(entry_files(runtime), lazy=True)
    needed = {p.relative_to(REPO).as_posix() for p in reached}
    missing = sorted(needed - wheels[runtime])
    assert not missing, f"{runtime}: its steps import {missing[:8]}, which its installed package lacks"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_holds_the_package_data_its_steps_read(runtime: str, wheels: dict[str, set[str]]) -> None:
    reached, _ = walk(entry_files(runtime), lazy=True)
    readers = {p.relative_to(REPO).as_posix() for p in reached} & set(DATA_READ_BY)
    needed = {f for r in readers for f in DATA_READ_BY[r]}
    missing = sorted(needed - wheels[runtime])
    assert not missing, f"{runtime}: its steps read {missing}, which its installed package lacks"
    if runtime == "trainer":  # export writes model repositories from the templates
        assert readers


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_installs_the_packages_its_steps_import(runtime: str) -> None:
    """Every third-party module imported when a step's modules load (for Triton's model.py files: anywhere, the
    python backend runs all of their code) comes from a distribution the image installs or from its base."""
    df = dockerfile(runtime)
    installed = installed_distributions(df)
    _, modules = walk(entry_files(runtime), lazy=False)
    if models := [f for f in entry_files(runtime) if f.name == "model.py" and "templates" in f.parts]:
        modules |= walk(models, lazy=True)[1]
    base = next((v for k, v in BASE_IMAGE_MODULES.items() if df.base.startswith(k)), set())
    missing = sorted(m for m in modules - base if not distributions_of(m) & installed)
    assert not missing, f"{runtime}: its steps import {missing}, which no package it installs provides"


def _writable_mounts(runtime: str) -> list[str] | None:
    """Writable volume mount paths of the runtime's Deployment when it mounts the root read-only, else None."""
    for path in sorted((MANIFESTS / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["image"] == f"distillery-{runtime}":
                    if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
                        return None
                    return [m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")]
    return None


def _writable_in_image(df: Dockerfile, path: str) -> bool:
    """Under /tmp (world-writable), or under a folder a RUN hands to the image's user."""
    if path == "/tmp" or path.startswith("/tmp/"):
        return True
    owned = [words for run in df.runs for words in re.findall(rf"chown (?:-R )?{df.uid}(?::\S+)? ([^&;]+)", run)]
    return any(path == d or path.startswith(d.rstrip("/") + "/") for ws in owned for d in ws.split())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_home_and_caches_are_writable_by_the_user(runtime: str) -> None:
    df = dockerfile(runtime)
    reached, modules = walk(entry_files(runtime), lazy=True)
    installed = installed_distributions(df)
    writers = {v for m, v in CACHE_VARS.items() if m in modules and distributions_of(m) & installed}
    needed = {"HOME", "XDG_CACHE_HOME"} | writers
    if REPO / "distillery" / "teacher" / "model.py" in reached and "torch" in installed:
        needed.add("DISTILLERY_CACHE")  # the dequantised teacher weights
    unset = sorted(needed - set(df.env))
    assert not unset, f"{runtime}: {unset} not set; the non-root user {df.user} may not write the defaults"
    mounts = _writable_mounts(runtime)
    for var in sorted(needed):
        path = df.env[var]
        assert _writable_in_image(df, path), f"{runtime}: {var}={path} is not writable by {df.user}"
        if mounts is not None:  # the Deployment mounts the root read-only: only its volumes are writable
            assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), \
                f"{runtime}: {var}={path} lies on the read-only root of its Deployment (writable: {mounts})"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_where_a_step_runs_triton_the_stub_environment_is_built(runtime: str) -> None:
    df = dockerfile(runtime)
    reached, _ = walk(entry_files(runtime), lazy=True)
    if df.entrypoint[0] == "tritonserver":  # NVIDIA's stub runs model.py in the image's python3
        missing = sorted(set(STUB_REQUIREMENTS) - set(df.pip_specs))
        assert not missing, f"{runtime}: Triton's stub environment lacks {missing} (distillery/serving/stubenv.py)"
    if SERVER not in reached:
        assert runtime != "trainer", "the trainer's ab_evaluation step runs Triton: the walk lost it"
        return
    env = df.env.get(STUB_ENV_VAR, "")
    assert env.startswith("/") and not env.startswith("/tmp"), \
        f"{runtime}: a step runs Triton; {STUB_ENV_VAR} must name the stub venv built into the image, got {env!r}"
    setup = [i for i, r in enumerate(df.runs) if "distillery serve --setup-env" in r]
    install = [i for i, r in enumerate(df.runs) if re.search(r"pip install [^&]*\.( |$)", r)]
    assert setup and install and setup[0] > install[0], \
        f"{runtime}: `distillery serve --setup-env` must run after the package is installed"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kfp_artifact_folders_are_writable_where_kfp_steps_run(runtime: str) -> None:
    if runtime != "trainer" and not container_steps(runtime):
        return  # no KFP step runs in this image
    df = dockerfile(runtime)
    for path in KFP_MOUNTS:
        assert _writable_in_image(df, path), f"{runtime}: KFP's launcher writes below {path}; {df.user} cannot"


def test_every_data_file_of_the_packages_is_declared_package_data() -> None:
    """A file the package reads but the wheel lacks fails only in an install: check the declaration here."""
    declared: set[Path] = set()
    for package, globs in pyproject()["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            declared.update(REPO.joinpath(*package.split(".")).glob(pattern))
    data = {p for root in FIRST_PARTY for p in (REPO / root).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data, "no package data found: the templates moved?"
    missing = sorted(str(p.relative_to(REPO)) for p in data - declared)
    assert not missing, f"not declared in [tool.setuptools.package-data]: {missing}"


def test_the_static_reading_sees_what_it_checks() -> None:
    """Guards against a parser that silently reads nothing: known facts of the trainer and serving images."""
    trainer, serving = dockerfile("trainer"), dockerfile("serving")
    assert canonicalize_name("torch") in installed_distributions(trainer)
    assert "relevance-distillery" in installed_distributions(serving)
    assert "torch" not in installed_distributions(serving)
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"] == "relevance-distillery"
