"""The one image constant: every container image tag derives from the package version.

KFP components (``components/``), the Dockerfiles under ``images/`` and the Kubernetes manifests all
take their image names from here, so a release bumps ``distillery.__version__`` and nothing else.
"""

from __future__ import annotations

from distillery import __version__

REGISTRY = "ghcr.io/relevance-distillery"
"""Where the project's images are pushed."""

RUNTIMES = ("trainer", "serving", "splitter", "operator")
"""One image per runtime: ``trainer`` runs every pipeline step (CPU or CUDA), ``serving`` is Triton with the
python backend, ``splitter`` the A/B traffic splitter, ``operator`` the kopf operator."""


def image(runtime: str, version: str = __version__, registry: str = REGISTRY) -> str:
    """``ghcr.io/relevance-distillery/distillery-trainer:0.1.0`` for ``runtime="trainer"``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"image runtime {runtime!r}: must be one of {', '.join(RUNTIMES)}")
    return f"{registry}/distillery-{runtime}:{version}"


TRAINER_IMAGE = image("trainer")
"""The base image of every KFP component."""
