"""The serving model repository as the operator reads it: the champion a new run must match, and the version a
finished run published (``distillery-repository.json``, written by :mod:`distillery.export.publish`).

    from distillery.operator.repository import read_manifest, champion_student, published
    manifest = read_manifest("s3://distillery-models/triton")   # None: an empty repository
    champion_student(manifest)                                 # → ("s3://…/model", "") or ("", why not)
    published(manifest, "relevance-distillery.esci-full.1a2b3c4d")   # → {"version": 2, "role": "challenger"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RepositoryUnavailable(RuntimeError):
    """The repository could not be read (missing bucket, rejected credentials, endpoint down); retried later."""


def read_manifest(uri: str) -> dict[str, Any] | None:
    """The repository's manifest; None when the repository holds none yet (nothing published there)."""
    from distillery.export.repository import read_manifest as read_repository_manifest
    from distillery.storage import StorageError

    try:
        return read_repository_manifest(uri, required=True)
    except FileNotFoundError:
        return None
    except (StorageError, OSError, ValueError) as exc:
        raise RepositoryUnavailable(f"serving repository {uri}: {exc}") from exc


def champion_student(manifest: dict[str, Any] | None) -> tuple[str, str]:
    """``(location, note)``: where the champion's student model lies, for the pipeline to score it on the new
    run's held-out queries; ``("", why)`` when there is no champion or its student cannot be read by a pipeline
    step (only ``s3://`` locations, or paths that exist on this machine, can)."""
    if not manifest or manifest.get("champion") is None:
        return "", "no champion yet: the first deployable student becomes it"
    version = str(manifest["champion"])
    entry = manifest.get("versions", {}).get(version, {})
    where = str(entry.get("student_uri") or entry.get("student_dir") or "")
    if where.startswith("s3://") or (where and Path(where).exists()):
        return where, f"champion: version {version} ({where})"
    return "", (f"champion version {version}'s student ({where or 'unrecorded'}) is not readable by the pipeline: "
                "the run is not compared with it, and a deployable student is published as a challenger")


def published(manifest: dict[str, Any] | None, run_label: str) -> dict[str, Any] | None:
    """``{"version", "role"}`` of the version the run labelled ``run_label`` published; None if it published none."""
    if not manifest or not run_label:
        return None
    mine = [int(v) for v, e in manifest.get("versions", {}).items() if e.get("run") == run_label]
    if not mine:
        return None
    version = max(mine)
    return {"version": version, "role": "champion" if manifest.get("champion") == version else "challenger"}


def published_status(repository: str, found: dict[str, Any] | None) -> dict[str, Any]:
    """``status.published`` of a finished run: the version it published and its role, or why there is none."""
    if not repository:
        return {"repository": "", "note": "no serving repository (spec.serving.repository, "
                                          "DISTILLERY_SERVING_REPOSITORY): the pipeline skipped deployment"}
    if found is None:
        return {"repository": repository, "note": "nothing published: the deployment gate kept the champion "
                                                  "(the run's report says why)"}
    return {"repository": repository, **found}
