"""From a regular (non-editable) install outside the checkout, ``distillery export`` writes a Triton repository
from the templates the package ships, and ``distillery serve`` starts Triton on it.

The install is real and offline: a fresh venv in a temporary folder (no pip of its own), a ``.pth`` line that
appends this project's ``site-packages`` for the heavy dependencies (torch, onnx, pytriton, …), and
``pip install --no-deps --no-index --no-build-isolation`` of a copy of the sources. A path in a ``.pth`` file
is only added to ``sys.path``: the ``.pth`` files inside it, the editable install's finder among them, are not
run, so ``distillery`` resolves to the copy installed in the new venv (the first test checks it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from distillery.serving.client import RelevanceClient
from distillery.serving.resources import TEMPLATE_FILES
from distillery.serving.stubenv import PURELIB, StubEnvError, check_env, default_env_dir
from tests.serving.conftest import ITEMS, QUERIES, make_student, reference_probs

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "distillery", "components", "pipelines")
# Checkout-only things in the environment would hide a missing file of the wheel.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "DISTILLERY_TRITON_ENV")}
ENV.update(PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", HF_HUB_OFFLINE="1")


def run(cmd: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env={**ENV, **env}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, \
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def purelib(python: Path) -> Path:
    return Path(run([str(python), "-c", PURELIB], python.parent).strip())


def bare_venv(path: Path, *extra_paths: str | Path) -> Path:
    """A venv without pip whose ``sys.path`` ends with ``extra_paths`` (plain ``.pth`` lines); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python3"
    # "a-" sorts before the package's own .pth (site processes .pth files in name order).
    (purelib(python) / "a-deps.pth").write_text("".join(f"{p}\n" for p in extra_paths), encoding="utf-8")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv holding the installed package (its ``bin/distillery``); built once per module."""
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    venv = root / "venv"
    python = bare_venv(venv, sysconfig.get_path("purelib"))
    # --ignore-installed: pip must not even look at the project's editable install (it would not uninstall a
    # distribution outside this venv, but nothing here should depend on that).
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--ignore-installed", "--no-cache-dir", str(src)], root)
    return venv


def test_the_package_resolves_to_the_installed_copy(installed: Path) -> None:
    out = run([str(installed / "bin" / "python3"), "-c",
               "import distillery, pipelines.operator\n"
               "from distillery.serving.resources import package_root, templates_dir\n"
               "print(distillery.__file__); print(package_root()); print(templates_dir())"], installed.parent)
    package_file, root, templates = (Path(line) for line in out.splitlines())
    site = purelib(installed / "bin" / "python3")
    assert package_file == site / "distillery" / "__init__.py"
    assert root == site and templates == site / "distillery" / "serving" / "templates"
    for name in TEMPLATE_FILES:
        assert (templates / name).read_bytes() == (REPO / "distillery" / "serving" / "templates" / name).read_bytes()
    # The splitter image's entry (`python -m distillery.abtest.splitter_main`) and its console script.
    assert "--triton-url" in run([str(installed / "bin" / "python3"), "-m", "distillery.abtest.splitter_main",
                                  "--help"], installed.parent)
    assert "--triton-url" in run([str(installed / "bin" / "distillery-splitter"), "--help"], installed.parent)


@pytest.fixture(scope="module")
def exported(installed: Path) -> Path:
    """A repository written by the installed ``distillery export`` (cwd outside the checkout)."""
    root = installed.parent
    student = make_student(root / "student", 1)
    out = root / "repo"
    run([str(installed / "bin" / "distillery"), "export", "--model", str(student), "--data", "synthetic:40",
         "--out", str(out), "--profile", "tiny"], root)
    return out


def test_export_writes_the_packaged_templates(installed: Path, exported: Path) -> None:
    templates = purelib(installed / "bin" / "python3") / "distillery" / "serving" / "templates"
    for model, template in (("tokenizer", "tokenizer"), ("student", "student_python"),
                            ("relevance_direct", "relevance_direct")):
        assert (exported / model / "1" / "model.py").read_bytes() == (templates / template / "model.py").read_bytes()
    for model in ("tokenizer", "student", "relevance", "relevance_v1", "relevance_direct"):
        config = (exported / model / "config.pbtxt").read_text()
        assert f'name: "{model}"' in config and "${" not in config
    assert (exported / "student" / "1" / "model.onnx").stat().st_size > 0


def test_serve_from_the_install_answers_like_pytorch(installed: Path, exported: Path) -> None:
    """``distillery serve`` of the install: its Triton, its python backend, a stub env importing the installed
    package (numpy 1 from the project's stub env, appended like the dependencies above)."""
    try:
        check_env(default_env_dir())
    except StubEnvError as exc:
        pytest.fail(f"the project's python-backend env is needed for its numpy 1 stack: {exc}")
    stub = installed.parent / "triton-stub"
    stub_python = bare_venv(stub, purelib(default_env_dir() / "bin" / "python3"))
    python = installed / "bin" / "python3"
    link = ("import sys; from pathlib import Path; from distillery.serving.stubenv import check_env, link_package\n"
            "link_package(Path(sys.argv[1])); check_env(Path(sys.argv[1]))")
    run([str(python), "-c", link, str(stub)], installed.parent)
    seen = run([str(stub_python), "-c", "import distillery; print(distillery.__file__)"], installed.parent).strip()
    assert Path(seen).resolve() == (purelib(python) / "distillery" / "__init__.py").resolve()
    # only the package is linked into the stub env, not the install's whole site-packages (numpy 2 builds)
    assert [p.name for p in (stub / "distillery-package").iterdir()] == ["distillery"]

    log = installed.parent / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([str(installed / "bin" / "distillery"), "serve", "--repo", str(exported),
                                 "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=installed.parent,
                                env={**ENV, "DISTILLERY_TRITON_ENV": str(stub)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Triton ready"), f"{line!r}\n{log.read_text()[-3000:]}"
        http = line.split("HTTP ")[1].split()[0]
        got = RelevanceClient(http, timeout_s=30).score(QUERIES, ITEMS)
        np.testing.assert_allclose(got, reference_probs(installed.parent / "student", QUERIES, ITEMS), atol=1e-5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()  # Triton then gets SIGINT from the kernel (PR_SET_PDEATHSIG)
            proc.wait(timeout=30)
