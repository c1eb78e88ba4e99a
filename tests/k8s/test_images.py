"""The Dockerfiles: pinned bases, pinned packages that agree with pyproject.toml, non-root users, an
entry point each, tags from the one image constant (distillery/images.py), and a file list that is what
``pip install .`` reads and holds every package the image's entry point imports."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from distillery import __version__
from distillery.images import RUNTIMES, image
from tests.k8s.conftest import MANIFESTS, REPO

DOCKERFILES = {r: REPO / "images" / r / "Dockerfile" for r in RUNTIMES}
FIRST_PARTY = ("distillery", "components", "pipelines")
PACKAGE_SOURCES = {"pyproject.toml", "README.md", *FIRST_PARTY}
MODULE_NAME = re.compile(rf"^({'|'.join(FIRST_PARTY)})(\.[a-z_][a-z0-9_]*)+$")


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


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def copied(text: str) -> set[str]:
    """The build-context paths the Dockerfile's COPY lines take (the last argument is the destination)."""
    out: set[str] = set()
    for line in re.findall(r"^COPY\s+(.+)$", text, flags=re.M):
        args = [a for a in line.split() if not a.startswith("--")]
        out.update(a.rstrip("/") for a in args[:-1])
    return out


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def entry_files(runtime: str) -> list[Path]:
    """The first-party files the image's entry point runs first."""
    (entry,) = re.findall(r"^ENTRYPOINT (\[.*\])$", DOCKERFILES[runtime].read_text(), flags=re.M)
    cmd = json.loads(entry)
    if cmd[0] == "tritonserver":  # Triton runs the python-backend model.py files the package ships
        return sorted((REPO / "distillery" / "serving" / "templates").glob("*/model.py"))
    if cmd[0] == "kopf":  # `kopf run ... -m MODULE`, as the operator's Deployment starts it
        (deploy,) = [d for d in yaml.safe_load_all((MANIFESTS / "base" / "operator.yaml").read_text())
                     if d and d["kind"] == "Deployment"]
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        names = [args[args.index("-m") + 1]]
    elif cmd[:2] == ["python", "-m"]:
        names = [cmd[2]]
    else:  # a console script of the package
        names = [pyproject()["project"]["scripts"][cmd[0]].split(":")[0]]
    if runtime == "trainer":  # it is also the image of every KFP component: their bodies run in it
        names += [f"components.{p.stem}" for p in sorted((REPO / "components").glob("[!_]*.py"))]
    files = [module_file(n) for n in names]
    assert all(files), f"{runtime}: entry point {cmd} names no module of the package ({names})"
    return [f for f in files if f]


def imported_packages(files: list[Path]) -> set[str]:
    """Top-level first-party packages reached from ``files`` by any import (lazy ones inside functions too, and
    module names in strings, as ``importlib.import_module`` takes them: the CLI's command table)."""
    seen: set[Path] = set()
    todo = list(files)
    roots: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
                names = [node.value] if module_file(node.value) else []
            else:
                continue
            for name in names:
                if name.split(".")[0] not in FIRST_PARTY:
                    continue
                roots.add(name.split(".")[0])
                parts = name.split(".")
                # importing a.b.c runs a/__init__.py and a/b/__init__.py too
                todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
    return roots


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_copies_what_pip_installs_and_what_its_entry_point_imports(runtime: str) -> None:
    text = DOCKERFILES[runtime].read_text()
    files = copied(text)
    extra = files - PACKAGE_SOURCES - {"requirements-extra.txt"}
    assert not extra, f"{runtime}: copies {sorted(extra)}, which the package does not install (make it package data)"
    needed = imported_packages(entry_files(runtime))
    assert needed <= files, f"{runtime}: its entry point imports {sorted(needed - files)}, which it does not copy"
    # The sources are removed once installed: the entry point runs the installed package and its package data.
    (workdir,) = re.findall(r"^WORKDIR\s+(\S+)$", text, flags=re.M)[:1]
    assert re.search(rf"pip install [^\n]*\.( |$)[^\n]*rm -rf {re.escape(workdir)}\b", text, flags=re.M), \
        f"{runtime}: the build directory {workdir} stays in the image"
    assert re.findall(r"^WORKDIR\s+(\S+)$", text, flags=re.M)[-1] != workdir


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
