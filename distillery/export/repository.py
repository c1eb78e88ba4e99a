"""Triton model-repository generator: tokenizer, student variants and the ``relevance`` ensembles.

    from distillery.export.repository import build_repository
    build_repository("runs/ft/model", "/tmp/repo", version=1)                  # champion
    build_repository("runs/ft2/model", "/tmp/repo", version=2, promote=False)   # challenger beside it

Layout (templates: package data in ``distillery/serving/templates/``, see
:func:`distillery.serving.resources.templates_dir`)::

    tokenizer/{config.pbtxt, N/model.py, N/student/{tokenizer.json, tokenizer_config.json, distillery.json}}
    student/{config.pbtxt, N/model.py, N/model.onnx, N/runtime.json}
                                                              python backend + onnxruntime or OpenVINO (CPU, here)
    student_onnx/{config.pbtxt, N/model.onnx}                 onnxruntime_onnx platform (variant "onnxruntime"):
                                                              the fused graph, or the plain one (export.onnx_graph)
    student_trt/{config.pbtxt, N/model.onnx}                  tensorrt_plan: the plain graph (standard ONNX ops);
                                                              N/model.plan built from it on a GPU node
                                                              (:mod:`distillery.export.plan`)
    relevance/{config.pbtxt, 1/}                              ensemble pinned to the champion's version
    relevance_vN/{config.pbtxt, 1/}                           ensemble pinned to version N
    relevance_direct/{config.pbtxt, N/model.py, N/model.onnx, N/runtime.json, N/student/...}
                                                              tokenizer + student in one python model
    distillery-repository.json                                versions, champion, parity figures, refusals

Each version serves one precision, the one that passed its parity gate on the exporting machine
(:mod:`distillery.export.pipeline`): an int8 or bf16 graph that missed its bounds is not written; the
version serves fused fp32, and its ``refused`` entry (manifest, ``export-report-vN.md``) gives the figures.

Every version of ``tokenizer`` and the students is loaded side by side (``version_policy: all``).  A
Triton ensemble pins each step to one version for all its own versions, so version N is reached
through its own ensemble ``relevance_vN``; ``relevance`` is the champion.  ``relevance_direct`` answers
like the ensembles (ask for version N) with one stub process per request instead of two: the
low-latency entry point on CPU nodes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from distillery.config import ExportConfig
from distillery.export.report import write_export_report
from distillery.export.tensorrt import TrtProfile
from distillery.serving.resources import templates_dir
from distillery.serving.runtime import RUNTIME_FILE, check_runtime

if TYPE_CHECKING:
    from distillery.export.pipeline import GateBounds

MANIFEST = "distillery-repository.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "distillery.json")
VARIANT_MODELS = {"python": "student", "onnxruntime": "student_onnx", "tensorrt": "student_trt"}
VARIANT_TEMPLATES = {"python": "student_python", "onnxruntime": "student_onnxruntime", "tensorrt": "student_tensorrt"}


def trt_profile(ex: ExportConfig) -> TrtProfile:
    """The TensorRT optimisation profile of ``export.trt_batch`` / ``export.trt_seq``."""
    return TrtProfile(*ex.trt_batch, *ex.trt_seq)


def render(template: Path, **values: Any) -> str:
    """Fill ``${...}`` fields; a field left unfilled is an error naming the template."""
    try:
        return Template(template.read_text(encoding="utf-8")).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ValueError(f"{template}: no value for ${{{exc.args[0]}}}") from None


def _values(opts: ExportConfig, num_labels: int) -> dict[str, Any]:
    p = trt_profile(opts)
    return dict(max_batch=opts.max_batch, queue_delay_us=opts.queue_delay_us, cpu_instances=opts.instances,
                gpu_instances=opts.gpu_instances, threads=opts.threads, num_labels=num_labels, pad_to=opts.pad_to,
                micro_batch=opts.micro_batch,
                trt_max_batch=min(opts.max_batch, p.max_batch), trt_opt_batch=min(p.opt_batch, opts.max_batch),
                trt_batch=f"{p.min_batch}/{p.opt_batch}/{p.max_batch}", trt_seq=f"{p.min_seq}/{p.opt_seq}/{p.max_seq}")


def _write_ensemble(repo: Path, name: str, version: int, opts: ExportConfig, num_labels: int) -> None:
    d = repo / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    # Triton needs the ensemble's (empty) version folder; S3 stores no empty folder, so it holds a file.
    (d / "1" / ".keep").write_text("version folder of an ensemble\n", encoding="utf-8")
    text = render(templates_dir() / "relevance" / "config.pbtxt", name=name, version=version,
                  student=VARIANT_MODELS[opts.serve_with], **_values(opts, num_labels))
    (d / "config.pbtxt").write_text(text, encoding="utf-8")


def _write_python_model(d: Path, template: Path, version: int, vals: dict[str, Any], student_dir: Path) -> None:
    """A python-backend model that reads the student's tokenizer from ``<version>/student/``."""
    (d / str(version) / "student").mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(render(template / "config.pbtxt", **vals), encoding="utf-8")
    shutil.copy2(template / "model.py", d / str(version) / "model.py")
    for f in TOKENIZER_FILES:
        if (student_dir / f).exists():
            shutil.copy2(student_dir / f, d / str(version) / "student" / f)


def _write_version(repo: Path, student_dir: Path, graphs: dict[str, Path], version: int, opts: ExportConfig,
                   num_labels: int, runtime: dict[str, Any]) -> None:
    tpl = templates_dir()
    vals = _values(opts, num_labels)
    _write_python_model(repo / "tokenizer", tpl / "tokenizer", version, vals, student_dir)
    if opts.direct and "python" in opts.variants:
        _write_python_model(repo / "relevance_direct", tpl / "relevance_direct", version, vals, student_dir)
        shutil.copy2(graphs["python"], repo / "relevance_direct" / str(version) / "model.onnx")
        _write_runtime(repo / "relevance_direct" / str(version), runtime)
    for variant in opts.variants:
        d = repo / VARIANT_MODELS[variant]
        (d / str(version)).mkdir(parents=True, exist_ok=True)
        (d / "config.pbtxt").write_text(render(tpl / VARIANT_TEMPLATES[variant] / "config.pbtxt", **vals),
                                        encoding="utf-8")
        shutil.copy2(graphs[variant], d / str(version) / "model.onnx")
        if variant == "python":
            shutil.copy2(tpl / "student_python" / "model.py", d / str(version) / "model.py")
            _write_runtime(d / str(version), runtime)


def _write_runtime(version_dir: Path, runtime: dict[str, Any]) -> None:
    """Which engine the python-backend models run this version on (a version's own choice, unlike config.pbtxt)."""
    (version_dir / RUNTIME_FILE).write_text(json.dumps(runtime) + "\n", encoding="utf-8")


def read_manifest(repo: str | Path, required: bool = False) -> dict[str, Any]:
    """``distillery-repository.json`` of ``repo`` (a folder, ``file://`` or ``s3://`` prefix): without one an empty
    repository, or with ``required`` a FileNotFoundError naming ``repo``; one that is not JSON, a ValueError naming
    the file.  The one reader of the manifest (export, publish, promotion, the plan step, the operator)."""
    from distillery import storage

    where = str(repo).removeprefix("file://")
    if storage.is_s3(where):
        name, raw = storage.join(where, MANIFEST), storage.read_object(storage.join(where, MANIFEST))
    else:
        path = Path(where) / MANIFEST
        name, raw = str(path), path.read_bytes() if path.is_file() else None
    if raw is None:
        if required:
            raise FileNotFoundError(f"{repo}: no {MANIFEST}: not a model repository written by `distillery export`")
        return {"versions": {}, "champion": None}
    return read_json(raw, name)


def read_json(raw: bytes | str, name: str | Path) -> dict[str, Any]:
    """``raw`` parsed as a JSON object; anything else is a ValueError naming the file ``name`` and the fault."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{name}: expected a JSON object, found {type(doc).__name__}")
    return doc


def _student_meta(student_dir: Path) -> dict[str, Any]:
    meta_file = student_dir / "distillery.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{student_dir}: not a saved student (no distillery.json)")
    if not (student_dir / "tokenizer.json").exists():
        raise FileNotFoundError(f"{student_dir}: no tokenizer.json (the server-side tokenizer needs a fast tokenizer)")
    return read_json(meta_file.read_bytes(), meta_file)


def check_tensorrt_input(onnx: Path, profile: TrtProfile, longest: int) -> None:
    """The ``student_trt`` graph must be one TensorRT can parse (standard ONNX operators only) and its profile
    must cover every sequence the tokenizer sends (``longest``: the student's ``max_length`` or ``pad_to``)."""
    from distillery.export.onnx_export import check_standard  # imports torch: kept off the serving image's path

    check_standard(onnx)
    if profile.max_seq < longest:
        raise ValueError(f"export.trt_seq MAX {profile.max_seq} < {longest}, the longest sequence the tokenizer "
                         "sends (the student's max_length, or export.pad_to): the TensorRT engine would reject it")


def tensorrt_entry(profile: TrtProfile) -> dict[str, Any]:
    """The manifest's ``tensorrt`` record of a version: the profile its plan must be built with (the one its
    ``config.pbtxt`` was rendered from); ``built`` is filled by :mod:`distillery.export.plan`.  No paths: a
    published version may be renumbered, its files live in ``student_trt/<version>/``."""
    return {"profile": dataclasses.asdict(profile), "built": None}


def write_version(student_dir: str | Path, repo: str | Path, version: int, onnx: str | Path,
                  options: ExportConfig | None = None, promote: bool = True,
                  info: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None,
                  graphs: dict[str, Path] | None = None) -> dict[str, Any]:
    """Add (or replace) version ``version`` of a local repository from an exported graph.

    ``options`` (default ``ExportConfig()``) says how the repository serves it: variants, batching, instances.
    ``runtime`` names the engine of the python-backend models (default onnxruntime, the graph's own precision).
    ``graphs`` gives a variant its own graph (default: ``onnx`` for every variant); the ``tensorrt`` variant's
    graph must hold standard ONNX operators only (:func:`check_tensorrt_input`), else nothing is written.

    Returns the updated manifest.  The new version gets its ensemble ``relevance_v<version>``;
    ``relevance`` points at it when ``promote`` is set or no champion exists yet.
    """
    opts = options or ExportConfig()
    student, out = Path(student_dir), Path(repo)
    if version < 1:
        raise ValueError(f"version={version}: Triton versions start at 1")
    meta = _student_meta(student)
    manifest = read_manifest(out)
    for v, entry in manifest["versions"].items():
        if entry["classes"] != meta["classes"] and int(v) != version:
            raise ValueError(f"{out}: version {v} serves classes {entry['classes']}, {student} has {meta['classes']}; "
                             "versions side by side must share the label set")
    num_labels = len(meta["classes"])
    per_variant = {v: Path(onnx) for v in (*opts.variants, "python")} | dict(graphs or {})
    if "tensorrt" in opts.variants:
        check_tensorrt_input(per_variant["tensorrt"], trt_profile(opts), max(int(meta["max_length"]), opts.pad_to))
    out.mkdir(parents=True, exist_ok=True)
    runtime = check_runtime(runtime or {}, f"version {version} runtime")
    _write_version(out, student, per_variant, version, opts, num_labels, runtime)
    _write_ensemble(out, f"relevance_v{version}", version, opts, num_labels)
    if promote or manifest.get("champion") is None:
        _write_ensemble(out, "relevance", version, opts, num_labels)
        manifest["champion"] = version
    manifest["versions"][str(version)] = {"student_dir": str(student), "classes": meta["classes"],
                                          "item_fields": meta["item_fields"], "max_length": meta["max_length"],
                                          "variants": list(opts.variants), "serve_with": opts.serve_with,
                                          "runtime": runtime,
                                          **({"tensorrt": tensorrt_entry(trt_profile(opts))}
                                             if "tensorrt" in opts.variants else {}),
                                          **(info or {})}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_export_report(out, version, manifest["versions"][str(version)], manifest["champion"])
    return manifest


def build_repository(student_dir: str | Path, out_repo: str | Path, version: int = 1,
                     export: ExportConfig | None = None, *, queries: list[str] | None = None,
                     items: list[str] | None = None, promote: bool = True, work_dir: str | Path | None = None,
                     bounds: GateBounds | None = None) -> dict[str, Any]:
    """Export a saved student and write it as version ``version`` of a Triton repository.

    ``export`` (``cfg.export``; default ``ExportConfig()``) holds every export setting: precision (``int8``,
    ``bf16``, ``fuse``), the parity bounds, ``require_precision`` and how the repository serves the student.
    ``student_dir`` and ``out_repo`` may be local paths or ``s3://`` URIs (through ``distillery.storage``;
    an existing S3 repository is fetched, extended and uploaded again).  With ``queries``/``items`` the
    parity gate runs on them and its figures go into the manifest; without, a few built-in pairs only
    check that the graph runs and matches.  ``bounds`` (default :meth:`GateBounds.from_config` of ``export``)
    gate each precision; an int8 or bf16 graph that misses them is refused and the version serves fp32
    (``export.require_precision``: the export fails instead).  Returns the repository manifest.
    """
    from distillery.export.pipeline import GateBounds

    ex = export or ExportConfig()
    bounds = bounds or GateBounds.from_config(ex)
    from distillery import storage
    from distillery.export.pipeline import export_student

    with tempfile.TemporaryDirectory(prefix="distillery-export-") as tmp:
        student = Path(storage.fetch(student_dir, Path(tmp) / "student")) if storage.is_s3(student_dir) \
            else Path(student_dir)
        local = Path(out_repo) if not storage.is_s3(out_repo) else Path(tmp) / "repo"
        if storage.is_s3(out_repo):
            try:
                storage.download_dir(str(out_repo), local)
            except storage.StorageError:
                local.mkdir(parents=True)  # a new repository
        q = queries if queries else ["usb c cable", "running shoes women"]
        it = items if items else ["USB-C to USB-C cable 2m | Anker", "Trail running shoe for women | Salomon | blue"]
        onnx_dir = Path(work_dir) if work_dir else Path(tmp) / "onnx"
        result = export_student(student, onnx_dir, q, it, int8=ex.int8, fuse=ex.fuse, bf16=ex.bf16, bounds=bounds,
                                require_precision=ex.require_precision)
        info = {"precision": result.served_precision, "requested_precision": result.requested,
                "refused": result.refused, "hardware": result.hardware,
                "parity": [r.to_dict() for r in result.reports], "student_dir": str(student_dir)}
        graphs = {v: result.graph_for(v, ex.onnx_graph) for v in (*ex.variants, "python")}
        info["graphs"] = {VARIANT_MODELS[v]: result.graph_label(g) for v, g in graphs.items() if v in ex.variants}
        manifest = write_version(student, local, version, result.served, ex, promote, info=info,
                                 runtime=result.runtime, graphs=graphs)
        if storage.is_s3(out_repo):
            storage.copy_tree(local, str(out_repo))
    return manifest

