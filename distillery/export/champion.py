"""The champion of a Triton model repository: which version it is, and promoting another version to it.

    from distillery.export.champion import champion_version, promote_version
    promote_version("s3://distillery-models/triton", 2)      # `relevance` now serves version 2
    champion_version("s3://distillery-models/triton")        # → 2

A repository written by :mod:`distillery.export.repository` records its champion twice: the ``relevance``
ensemble pins the champion's version, and ``distillery-repository.json`` names it (and the pending
``challenger`` that :mod:`distillery.export.publish` registered, cleared when it is promoted). Promotion rewrites both
from the version's own ensemble ``relevance_vN`` (rendered from the same template with the same values; only
the name differs), so nothing is re-exported and Triton, polling the repository, reloads ``relevance``.
On S3 only those two objects change (plus the checksum manifest of :mod:`distillery.storage`, so a later
download of the tree still verifies); the operator promotes this way after the gate says so.
Promoting the version that already is the champion changes nothing, so a retried promotion is safe.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from distillery import storage
from distillery.export.repository import MANIFEST, read_manifest

CHAMPION_MODEL = "relevance"


class PromotionError(ValueError):
    """The repository cannot make that version its champion (no such version or ensemble); names both."""


def _location(repo: str) -> str:
    return repo.removeprefix("file://")


def _read(repo: str, rel: str) -> bytes | None:
    """A file of the repository (local or ``s3://``), None when absent."""
    where = _location(repo)
    if storage.is_s3(where):
        return storage.read_object(storage.join(where, rel))
    path = Path(where) / rel
    return path.read_bytes() if path.is_file() else None


def _write(repo: str, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path → content) into the repository in that order; on S3 through
    :func:`distillery.storage.upload_files`, which keeps the tree's checksum manifest right."""
    where = _location(repo)
    with tempfile.TemporaryDirectory(prefix="distillery-promote-") as tmp:
        root = Path(where) if not storage.is_s3(where) else Path(tmp)
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        if storage.is_s3(where):
            storage.upload_files(root, where, list(files))


def read_repository_manifest(repo: str) -> dict[str, Any]:
    """``distillery-repository.json`` of ``repo``; a :class:`PromotionError` when the repository has none."""
    try:
        return read_manifest(repo, required=True)
    except FileNotFoundError as exc:
        raise PromotionError(str(exc)) from None


def champion_version(repo: str) -> int | None:
    """The version the repository's ``relevance`` ensemble serves (from its manifest), None before any."""
    champ = read_repository_manifest(repo).get("champion")
    return int(champ) if champ is not None else None


def promote_version(repo: str, version: int, model: str = CHAMPION_MODEL) -> dict[str, Any]:
    """Make ``version`` the champion of ``repo`` (a folder, ``file://`` or ``s3://`` prefix): ``model`` pins
    it and the manifest names it. Returns the updated manifest."""
    manifest = read_repository_manifest(repo)
    if str(version) not in manifest.get("versions", {}):
        known = sorted(int(v) for v in manifest.get("versions", {}))
        raise PromotionError(f"{repo}: no version {version} to promote (versions: {known})")
    if manifest.get("champion") == version:
        return manifest
    own = _read(repo, f"{model}_v{version}/config.pbtxt")
    if own is None:
        raise PromotionError(f"{repo}: {model}_v{version}/config.pbtxt is missing: version {version} has no ensemble")
    text, n = re.subn(r'^name: "[^"]*"$', f'name: "{model}"', own.decode("utf-8"), count=1, flags=re.M)
    if n != 1:
        raise PromotionError(f"{repo}: {model}_v{version}/config.pbtxt has no top-level name line")
    manifest["champion"] = version
    if manifest.get("challenger") == version:  # registered by distillery.export.publish; no longer pending
        manifest["challenger"] = None
    _write(repo, {f"{model}/config.pbtxt": text.encode("utf-8"),
                  MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode("utf-8")})
    return manifest
