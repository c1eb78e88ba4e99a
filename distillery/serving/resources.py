"""Files that ship inside the package, found through :mod:`importlib.resources`.

    from distillery.serving.resources import templates_dir
    templates_dir() / "tokenizer" / "config.pbtxt"

The Triton model templates live in ``distillery/serving/templates/`` (package data, declared in
``pyproject.toml``), so an installed wheel — a cluster image, a ``pip install .`` — finds them exactly as a
checkout does; nothing is looked up relative to the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATE_PACKAGE = "distillery.serving"
TEMPLATE_FOLDER = "templates"
TEMPLATE_FILES = (
    "relevance/config.pbtxt",
    "relevance_direct/config.pbtxt", "relevance_direct/model.py",
    "student_onnxruntime/config.pbtxt",
    "student_python/config.pbtxt", "student_python/model.py",
    "student_tensorrt/config.pbtxt",
    "tokenizer/config.pbtxt", "tokenizer/model.py",
)
"""Every template file the repository writer reads (``templates/README.md`` describes them)."""


def _on_disk(traversable: object, what: str) -> Path:
    # The writer copies and renders with pathlib; a zipped install would need importlib.resources.as_file,
    # which only handles directories from Python 3.12 on.
    if not isinstance(traversable, Path):
        raise FileNotFoundError(f"{what} is not a directory on disk ({traversable!r}): install the package unzipped")
    return traversable


def templates_dir() -> Path:
    """The installed ``distillery/serving/templates`` folder; an error names any template file missing from it."""
    root = _on_disk(resources.files(TEMPLATE_PACKAGE) / TEMPLATE_FOLDER, "the Triton templates folder")
    missing = [f for f in TEMPLATE_FILES if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: Triton template file(s) {', '.join(missing)} missing; the package was "
                                "installed without its data (reinstall relevance-distillery)")
    return root


def package_root() -> Path:
    """The directory that holds the ``distillery`` package: the checkout for an editable install, the
    environment's ``site-packages`` otherwise (what the Triton stub's environment puts on its path)."""
    return _on_disk(resources.files("distillery"), "the distillery package").parent
