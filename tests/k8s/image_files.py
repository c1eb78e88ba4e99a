"""What an image will hold, read statically from its Dockerfile (Docker builds cannot run here: no registry), and
what its steps need, read from the code.

    df = dockerfile("trainer")
    df.env["HOME"], df.pip_specs, df.copied          # ENV, quoted pip specs, COPY sources
    installed_distributions(df)                       # the distributions its pip lines install (with their deps)
    walk(entry_files("trainer"), lazy=True)           # first-party files and third-party modules its steps import
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.k8s.conftest import MANIFESTS, REPO

FIRST_PARTY = ("distillery", "components", "pipelines")
MODULE_NAME = re.compile(rf"^({'|'.join(FIRST_PARTY)})(\.[a-z_][a-z0-9_]*)+$")
PROJECT = "relevance-distillery"


@dataclass
class Dockerfile:
    runtime: str
    text: str
    base: str = ""
    user: str = ""
    env: dict[str, str] = field(default_factory=dict)
    copied: set[str] = field(default_factory=set)
    runs: list[str] = field(default_factory=list)
    """RUN commands, continuation lines joined."""
    entrypoint: list[str] = field(default_factory=list)

    @property
    def pip_specs(self) -> list[str]:
        """Quoted requirement specs of the pip install commands."""
        return [s for run in self.runs for s in re.findall(r'"([A-Za-z0-9_.-]+(?:\[[^\]]*\])?[=<>!~][^"]*)"', run)]

    def pip_commands(self) -> list[list[str]]:
        out = []
        for run in self.runs:
            for part in re.split(r"&&|;", run):
                words = shlex.split(part)
                if words[:2] == ["pip", "install"] or words[1:4] == ["-m", "pip", "install"]:
                    out.append(words)
        return out

    @property
    def uid(self) -> str:
        return self.user.split(":")[0]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each logical line: comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def dockerfile(runtime: str) -> Dockerfile:
    text = (REPO / "images" / runtime / "Dockerfile").read_text()
    df = Dockerfile(runtime, text)
    for word, rest in instructions(text):
        if word == "FROM":
            df.base = rest.split()[0]
        elif word == "USER":
            df.user = rest
        elif word == "ENV":
            pairs = shlex.split(rest)
            if pairs and "=" not in pairs[0]:  # legacy form: ENV KEY VALUE
                df.env[pairs[0]] = " ".join(pairs[1:])
            else:
                df.env.update(p.split("=", 1) for p in pairs)  # type: ignore[arg-type]
        elif word == "COPY":
            args = [a for a in rest.split() if not a.startswith("--")]
            df.copied.update(a.rstrip("/") for a in args[:-1])
        elif word == "RUN":
            df.runs.append(rest)
        elif word == "ENTRYPOINT":
            df.entrypoint = json.loads(rest)
    return df


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def entry_files(runtime: str) -> list[Path]:
    """The first-party files the image's steps run first: its entry point's module (for Triton: the python-backend
    model.py files), the modules KFP container components run in it, and for the trainer every KFP component (their
    bodies run in it)."""
    cmd = dockerfile(runtime).entrypoint
    steps = [module_file(n) for n in container_steps(runtime)]
    if cmd[0] == "tritonserver":  # Triton runs the python-backend model.py files the package ships
        return sorted((REPO / "distillery" / "serving" / "templates").glob("*/model.py")) + [f for f in steps if f]
    if cmd[0] == "kopf":  # `kopf run ... -m MODULE`, as the operator's Deployment starts it
        (deploy,) = [d for d in yaml.safe_load_all((MANIFESTS / "base" / "operator.yaml").read_text())
                     if d and d["kind"] == "Deployment"]
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        names = [args[args.index("-m") + 1]]
    elif cmd[:2] == ["python", "-m"]:
        names = [cmd[2]]
    else:  # a console script of the package
        names = [pyproject()["project"]["scripts"][cmd[0]].split(":")[0]]
    if runtime == "trainer":
        names += [f"components.{p.stem}" for p in sorted((REPO / "components").glob("[!_]*.py"))]
    names += container_steps(runtime)
    files = [module_file(n) for n in names]
    assert all(files), f"{runtime}: entry point {cmd} names no module of the package ({names})"
    return [f for f in files if f]


def container_steps(runtime: str) -> list[str]:
    """Modules that KFP container components run in this runtime's image (``python3 -m MODULE``)."""
    out = []
    for path in sorted((REPO / "components").glob("[!_]*.py")):
        text = path.read_text()
        names = set(re.findall(rf'^(\w+) = image\("{runtime}"\)', text, flags=re.M))
        for var, command in re.findall(r"ContainerSpec\(image=(\w+), command=\[([^\]]*)\]", text):
            words = [w.strip().strip('"') for w in command.split(",")]
            if var in names and "-m" in words:
                out.append(words[words.index("-m") + 1])
    return out


def _skipped(tree: ast.Module, lazy: bool) -> set[int]:
    """Nodes an import of the module does not run: ``if TYPE_CHECKING`` blocks; function bodies unless ``lazy``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for n in ast.walk(node))
        elif not lazy and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            out.update(id(n) for n in ast.walk(node) if n is not node)
    return out


def _imports(node: ast.AST, lazy: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    if lazy and isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
        return [node.value] if module_file(node.value) else []  # importlib.import_module: the CLI's command table
    return []


def walk(files: list[Path], lazy: bool, lazy_entries: bool = True) -> tuple[set[Path], set[str]]:
    """First-party files reached from ``files`` and the third-party top-level modules they import.  ``lazy``
    follows imports inside functions too (everything a step may run); otherwise only what importing runs, except
    in ``files`` themselves when ``lazy_entries`` (a step runs its entry function: a component body, model.py)."""
    seen: set[Path] = set()
    third: set[str] = set()
    todo = [(f, lazy or lazy_entries) for f in files]
    while todo:
        path, deep = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), str(path))
        skip = _skipped(tree, deep)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            for name in _imports(node, deep):
                parts = name.split(".")
                if parts[0] not in FIRST_PARTY:
                    if parts[0] not in sys.stdlib_module_names and isinstance(node, ast.Import | ast.ImportFrom):
                        third.add(parts[0])
                    continue
                # importing a.b.c runs a/__init__.py and a/b/__init__.py too; a component's body runs in the
                # trainer image (an entry file there), never where a pipeline merely declares it
                todo += [(f, lazy and not f.is_relative_to(REPO / "components"))
                         for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
    return seen, third


def _requires(dist: str, extras: set[str]) -> list[Requirement]:
    try:
        reqs = md.requires(dist) or []
    except md.PackageNotFoundError:
        return []
    out = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            out.append(req)
    return out


def installed_distributions(df: Dockerfile) -> set[str]:
    """Canonical names of the distributions the image's pip commands install, dependencies included (resolved
    through this environment's metadata, where every pinned package of the project is installed)."""
    roots: list[Requirement] = []
    for words in df.pip_commands():
        no_deps = "--no-deps" in words
        args = words[words.index("install") + 1:]
        for i, arg in enumerate(args):
            if arg == ".":
                roots.append(Requirement(PROJECT))
                if not no_deps:
                    roots += [Requirement(d) for d in pyproject()["project"]["dependencies"]]
            elif arg == "-r":
                lines = (REPO / args[i + 1]).read_text().splitlines()
                roots += [Requirement(ln) for ln in lines if ln.strip() and not ln.startswith("#")]
            elif not arg.startswith("-") and args[i - 1] != "-r" and re.match(r"^[A-Za-z0-9]", arg):
                roots.append(Requirement(arg))
    found: set[str] = set()
    todo = [(r, r.name != PROJECT) for r in roots]
    while todo:
        req, deps = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found.add(name)
        if deps:
            todo += [(r, True) for r in _requires(req.name, set(req.extras))]
    return found


def distributions_of(module: str) -> set[str]:
    """The distributions that provide a top-level module (this environment's ``packages_distributions``)."""
    return {canonicalize_name(d) for d in md.packages_distributions().get(module, [])}


def wheel_files(sources: set[str], build_dir: Path) -> set[str]:
    """Paths inside the wheel that ``pip install .`` builds from exactly ``sources`` (what the image copies)."""
    import shutil
    import subprocess
    import zipfile

    src = build_dir / "src"
    src.mkdir(parents=True)
    for name in sources:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = build_dir / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--no-cache-dir", "-w", str(out), str(src)], check=True, capture_output=True, timeout=240)
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if ".dist-info/" not in n}
