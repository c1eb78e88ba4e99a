"""Publish an exported model repository into the serving repository as its NEXT version.

The export step writes a repository holding one version (``distillery.export.repository``); the serving
repository (where Triton loads from, often ``s3://``) may already hold versions and a champion.  Copying
one tree over the other would overwrite the champion's version 1, so :func:`publish_version` merges
instead: the exported version is renumbered to one past the highest version there, gets its own
``relevance_v<N>`` ensemble and export report, and is registered in ``distillery-repository.json`` as the
``challenger``; ``relevance`` keeps pointing at the champion until a promotion moves it.  Into an empty
repository the version is published as is and becomes the champion (there is nothing to compare it with).

Publishing is idempotent: a student already published (same ``student_uri``, or the same non-empty ``run``
label: the operator's run name) is not published twice, so a retried pipeline step does not add a second copy.
The operator finds the version its run published by that label.

    from distillery.export.publish import publish_version
    publish_version("/tmp/exported-repo", "s3://distillery-models/triton")   # → {"version": 2, "role": "challenger", …}
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from distillery.export.repository import MANIFEST, read_manifest

KFP_LOCAL_PREFIXES = {"/s3/": "s3://"}
"""KFP's launcher mounts an artifact stored at ``s3://B/K`` at the local path ``/s3/B/K`` inside the pod."""


def artifact_uri(path: str) -> str:
    """The durable location of a KFP artifact's local path (``/s3/B/K`` → ``s3://B/K``); other paths as given."""
    for local, scheme in KFP_LOCAL_PREFIXES.items():
        if path.startswith(local):
            return scheme + path[len(local):]
    return path


def _only_version(manifest: dict[str, Any], where: Path) -> str:
    versions = sorted(manifest["versions"], key=int)
    if not versions:
        raise ValueError(f"{where}: not an exported model repository (no version in {MANIFEST})")
    if len(versions) > 1:
        raise ValueError(f"{where}: holds versions {versions}; publish one exported version at a time")
    return versions[0]


def _renumber_ensemble(text: str, old: str, new: int) -> str:
    """The ``relevance_v<old>`` ensemble's config as ``relevance_v<new>`` (name and every pinned step)."""
    out, n_name = re.subn(rf'^name: "relevance_v{old}"$', f'name: "relevance_v{new}"', text, flags=re.M)
    out, n_steps = re.subn(rf"model_version: {old}\b", f"model_version: {new}", out)
    if n_name != 1 or n_steps == 0:
        raise ValueError(f"relevance_v{old}/config.pbtxt: not the ensemble template's layout (cannot renumber it)")
    return out


def _copy_version(src: Path, dst: Path, old: str, new: int) -> None:
    """Version ``old`` of every model under ``src`` as version ``new`` under ``dst``; a model's config.pbtxt
    (shared by its versions) is copied only where ``dst`` has none, so the champion's serving stays as it was."""
    for model in sorted(p for p in src.iterdir() if (p / "config.pbtxt").exists()):
        if model.name == "relevance" or model.name == f"relevance_v{old}":
            continue  # ensembles are written below
        (dst / model.name).mkdir(parents=True, exist_ok=True)
        if not (dst / model.name / "config.pbtxt").exists():
            shutil.copy2(model / "config.pbtxt", dst / model.name / "config.pbtxt")
        if (model / old).is_dir():
            shutil.rmtree(dst / model.name / str(new), ignore_errors=True)
            shutil.copytree(model / old, dst / model.name / str(new))
    ensemble = dst / f"relevance_v{new}"
    (ensemble / "1").mkdir(parents=True, exist_ok=True)
    # An object store keeps no empty folder: without a file in it, Triton reading the repository from S3 finds
    # no version of the ensemble and refuses to start (as repository.py's ensembles do).
    (ensemble / "1" / ".keep").write_text("version folder of an ensemble\n", encoding="utf-8")
    text = (src / f"relevance_v{old}" / "config.pbtxt").read_text(encoding="utf-8")
    (ensemble / "config.pbtxt").write_text(_renumber_ensemble(text, old, new), encoding="utf-8")
    for report in src.glob(f"export-report-v{old}.*"):
        shutil.copy2(report, dst / f"export-report-v{new}{report.suffix}")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return any(a.get(k) and a.get(k) == b.get(k) for k in ("student_uri", "run"))


def merge_version(exported: Path, serving: Path, run_label: str = "") -> dict[str, Any]:
    """Merge the one version of the local repository ``exported`` into the local repository ``serving``;
    returns ``{"version", "role", "champion", "published"}`` (``published``: False when it was already there)."""
    src = read_manifest(exported)
    old = _only_version(src, exported)
    entry = dict(src["versions"][old])
    entry["student_uri"] = artifact_uri(str(entry.get("student_dir", "")))
    entry["run"] = run_label
    dst = read_manifest(serving)
    for v, e in dst["versions"].items():
        if _same(e, entry):
            role = "champion" if dst.get("champion") == int(v) else "challenger"
            return {"version": int(v), "role": role, "champion": dst.get("champion"), "published": False}
        if e.get("classes") != entry.get("classes"):
            raise ValueError(f"{serving}: version {v} serves classes {e.get('classes')}, the exported student "
                             f"{entry.get('classes')}; versions side by side must share the label set")
    serving.mkdir(parents=True, exist_ok=True)
    if dst.get("champion") is None:  # an empty repository: the export as it is, champion included
        shutil.copytree(exported, serving, dirs_exist_ok=True)
        version, role = int(old), "champion"
        dst = {**dst, "champion": version}
    else:
        version, role = max(int(v) for v in dst["versions"]) + 1, "challenger"
        _copy_version(exported, serving, old, version)
        dst["challenger"] = version
    dst["versions"][str(version)] = entry
    (serving / MANIFEST).write_text(json.dumps(dst, indent=2) + "\n", encoding="utf-8")
    return {"version": version, "role": role, "champion": dst["champion"], "published": True}


def _stage_serving(exported: Path, target: str, local: Path) -> dict[str, bytes]:
    """Into ``local``, the few files of the S3 repository ``target`` that :func:`merge_version` reads (its manifest
    and the ``config.pbtxt`` of every model the export holds); returns them (relative path → content)."""
    from distillery import storage

    models = [m.name for m in sorted(exported.iterdir()) if (m / "config.pbtxt").exists()]
    wanted = [MANIFEST, *(f"{m}/config.pbtxt" for m in models)]
    read = {}
    for rel in wanted:
        data = storage.read_object(storage.join(target, rel))
        if data is not None:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            (local / rel).write_bytes(data)
            read[rel] = data
    return read


def publish_version(exported: str | Path, target: str | Path, run_label: str = "") -> dict[str, Any]:
    """Publish the exported repository into ``target`` (a directory or ``s3://``) as its next version
    (:func:`merge_version`); returns the result with ``repository``: the target.

    On S3 only the repository's manifest and model configs are read, and only what the merge added or changed is
    uploaded (the new version's files, then the manifest last, so no reader sees a version whose files are not
    all there; the champion's objects are never rewritten).  There is no lock: two runs publishing into one
    repository at the same moment can still both take the same version number."""
    from distillery import storage

    if not storage.is_s3(target):
        return {"repository": str(target), **merge_version(Path(exported), Path(target), run_label)}
    with tempfile.TemporaryDirectory(prefix="distillery-publish-") as tmp:
        local = Path(tmp) / "serving"
        local.mkdir()
        before = _stage_serving(Path(exported), str(target), local)
        result = merge_version(Path(exported), local, run_label)
        if result["published"]:
            files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
            changed = [rel for rel in files
                       if rel != MANIFEST and (rel not in before or (local / rel).read_bytes() != before[rel])]
            storage.upload_files(local, str(target), [*changed, MANIFEST])
    return {"repository": str(target), **result}
