"""The Python environment Triton's python-backend stub runs in.

The stub bundled with ``nvidia-pytriton`` (0.5.7 and 0.7.0 alike) was compiled against NumPy 1's C
ABI: under the project's NumPy 2 every tensor it hands to Python is garbled (int64 ``[1, 2, 3]``
arrives as ``[1, 1, 1]``, a BYTES tensor fails to deserialise).  The stub therefore runs in a small
venv of its own with NumPy 1.26, onnxruntime, OpenVINO and tokenizers; a ``.pth`` file puts the directory that
holds the ``distillery`` package (the checkout, or ``site-packages`` of a regular install) on its path so
``model.py`` can import ``distillery.serving``.  The stub finds that venv as the first
``python3`` on ``PATH`` and needs the interpreter's own ``libpython`` first on ``LD_LIBRARY_PATH``.

    distillery serve --setup-env            # once, needs PyPI (part of `make install`)
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from distillery.serving.resources import package_root

STUB_REQUIREMENTS = ("numpy==1.26.4", "onnxruntime==1.32.0", "openvino==2026.4.1", "tokenizers==0.23.3")
ENV_VAR = "DISTILLERY_TRITON_ENV"
PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
PROBE = "import numpy, onnxruntime, openvino, tokenizers, distillery.serving.scorer; print(numpy.__version__)"
# The name predates regular installs; kept so that create_env repairs an existing env in place.
PACKAGE_PTH = "distillery-checkout.pth"


class StubEnvError(RuntimeError):
    """The stub environment is missing or unusable; the message says how to make it."""


def default_env_dir() -> Path:
    """``$DISTILLERY_TRITON_ENV``, else ``triton-stub`` inside the project's ``.venv`` (removed by make clean)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(sys.prefix) / "triton-stub"


def base_python() -> str:
    """The interpreter the project venv was made from (its LIBDIR holds the libpython the stub loads)."""
    return getattr(sys, "_base_executable", sys.executable)


def check_env(env_dir: Path) -> str:
    """Return the env's NumPy version; raise :class:`StubEnvError` unless it can run the stub's models."""
    py = env_dir / "bin" / "python3"
    hint = f"create it with `distillery serve --setup-env` (or set ${ENV_VAR})"
    if not py.exists():
        raise StubEnvError(f"Triton python-backend environment {env_dir} does not exist: {hint}")
    proc = subprocess.run([str(py), "-c", PROBE], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StubEnvError(f"{env_dir} cannot import the serving modules: {proc.stderr.strip()[-400:]}; {hint}")
    version = proc.stdout.strip()
    if int(version.split(".")[0]) >= 2:
        raise StubEnvError(f"{env_dir} has numpy {version}: the bundled python-backend stub needs numpy<2")
    return version


def create_env(env_dir: Path | None = None, quiet: bool = True) -> Path:
    """Create (or repair) the stub venv: pinned packages from PyPI plus a ``.pth`` to this package."""
    env_dir = env_dir or default_env_dir()
    if not (env_dir / "bin" / "python3").exists():
        subprocess.run([base_python(), "-m", "venv", str(env_dir)], check=True)
    pip = [str(env_dir / "bin" / "python3"), "-m", "pip", "install", *(["-q"] if quiet else [])]
    subprocess.run([*pip, *STUB_REQUIREMENTS], check=True)
    link_package(env_dir)
    check_env(env_dir)
    return env_dir


def link_package(env_dir: Path) -> Path:
    """Put the running ``distillery`` package, and nothing else, on ``env_dir``'s path; returns the ``.pth``.

    The stub then imports the very package that wrote the repository, whether installed or checked out.  The
    ``.pth`` names a folder holding one link to the package: pointing it at the main environment's whole
    ``site-packages`` (a regular install) would let the stub fall back to packages built against NumPy 2, the
    mismatch this environment exists to avoid.
    """
    site = subprocess.run([str(env_dir / "bin" / "python3"), "-c", PURELIB],
                          capture_output=True, text=True, check=True).stdout.strip()
    links = env_dir / "distillery-package"
    links.mkdir(exist_ok=True)
    link = links / "distillery"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(package_root() / "distillery", target_is_directory=True)
    pth = Path(site) / PACKAGE_PTH
    pth.write_text(str(links) + "\n", encoding="utf-8")
    return pth


def stub_environ(env_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for ``tritonserver`` so that its stub runs in ``env_dir``."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["PATH"] = os.pathsep.join([str(env_dir / "bin"), env.get("PATH", "")])
    # Without the interpreter's LIBDIR first, the stub loads Debian's libpython3.11 and fails with
    # "'_thread.RLock' object has no attribute '_recursion_count'".
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [libdir, env.get("LD_LIBRARY_PATH", "")] if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env
