"""The artifact store: local paths and ``s3://bucket/prefix`` URIs, through boto3.

Endpoint and credentials come from the environment, as on a cluster with MinIO or AWS:
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` / ``S3_ENDPOINT_URL`` (unset: AWS itself),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``.

A directory uploaded with :func:`upload_dir` gets a manifest (``.distillery-manifest.json``) with the
size and SHA-256 of every file; :func:`download_dir` checks each downloaded file against it, so a
model that arrives is byte-for-byte the one that left.  Large files go up and down in multipart
chunks (boto3's transfer manager).  Every failure is a :class:`StorageError` naming the URI and the
cause (missing bucket, rejected credentials, unreachable endpoint, checksum mismatch).

    from distillery.storage import copy_tree, fetch, read_object
    copy_tree("runs/x/student", "s3://models/relevance/student")   # publish
    local = fetch("s3://models/relevance/student", "/tmp/cache")   # any command can then read it (downloaded once)
    read_object("s3://models/relevance/student/config.json")       # bytes, or None when there is no such object

:func:`read_object`, :func:`exists` and :func:`list_keys` are the one way the project reads single objects;
:func:`upload_files` adds files to a tree without re-uploading the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = ".distillery-manifest.json"
_CHUNK = 8 * 1024 * 1024
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,62}"
"""A bucket name as S3 allows it (the one definition the CRDs' patterns and the data specs' check share)."""
S3_URI = re.compile(rf"^s3://{BUCKET_PATTERN}(/.*)?$")
"""An ``s3://BUCKET[/PREFIX]`` URI with a bucket name as S3 allows it (the CRDs' patterns say the same)."""
S3_OBJECT = re.compile(rf"^s3://{BUCKET_PATTERN}/[^,]+$")
"""An ``s3://BUCKET/KEY`` URI naming an object or a non-empty prefix (no comma: data specs are comma-separated)."""


SECRET = "distillery-s3"
"""The Kubernetes Secret holding the artifact store's endpoint and credentials (pipeline steps, training-job pods
and manifests/base all read this one)."""
SECRET_ENV = (("AWS_ACCESS_KEY_ID", "accessKeyId", False), ("AWS_SECRET_ACCESS_KEY", "secretAccessKey", False),
              ("AWS_ENDPOINT_URL_S3", "endpoint", True), ("AWS_DEFAULT_REGION", "region", True))
"""(environment variable, key of :data:`SECRET`, optional): what :meth:`S3Settings.from_env` reads; AWS itself
needs no endpoint, hence optional."""


class StorageError(RuntimeError):
    """An artifact could not be stored or fetched; the message names the URI and the cause."""


def is_s3(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def parse_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")`` (the prefix without a trailing slash)."""
    if not is_s3(uri):
        raise StorageError(f"{uri!r}: not an s3:// URI")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r}: the URI names no bucket (expected s3://BUCKET/PREFIX)")
    return bucket, key.strip("/")


@dataclass
class S3Settings:
    """Where the S3 API is and how to sign requests; :meth:`from_env` reads the usual variables."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    multipart_threshold: int = _CHUNK
    """Files at least this large go in multipart chunks of this size."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> S3Settings:
        endpoint = next((os.environ[k] for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")
                         if os.environ.get(k)), None)
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        return cls(endpoint_url=endpoint, region=region)


def client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client; path-style addressing when an endpoint is given (MinIO needs it)."""
    import boto3
    from botocore.config import Config as BotoConfig

    s = settings or S3Settings.from_env()
    cfg = BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                     s3={"addressing_style": "path" if s.endpoint_url else "auto"})
    # A fresh session each time: boto3's default session caches the credentials it first resolved,
    # so a rotated secret (or a test switching keys) would otherwise be ignored.
    return boto3.session.Session().client("s3", endpoint_url=s.endpoint_url, region_name=s.region, config=cfg)


def _transfer_config(settings: S3Settings | None) -> Any:
    from boto3.s3.transfer import TransferConfig

    size = (settings or S3Settings.from_env()).multipart_threshold
    return TransferConfig(multipart_threshold=size, multipart_chunksize=size, max_concurrency=4)


def is_missing(exc: Exception) -> bool:
    """Whether a botocore error says the object (not the bucket) does not exist."""
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code", "")) in (
        "NoSuchKey", "404", "NotFound")


def explain(exc: Exception, uri: str, action: str) -> StorageError:
    """Turn a botocore exception into an error a person can act on."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f"{action} {uri}"
    if isinstance(exc, NoCredentialsError):
        return StorageError(f"{where}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"{where}: cannot reach the S3 endpoint ({exc}); check AWS_ENDPOINT_URL")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (code == "404" and action == "check bucket of"):
            return StorageError(f"{where}: the bucket {parse_s3(uri)[0]!r} does not exist")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken"):
            return StorageError(f"{where}: the S3 credentials were rejected ({code}); "
                                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
        if code in ("AccessDenied", "403") or status == 403:
            return StorageError(f"{where}: access denied ({code}); the credentials lack permission "
                                "or were rejected")
        if code in ("NoSuchKey", "404"):
            return StorageError(f"{where}: no such object")
        return StorageError(f"{where}: {code or status}: {exc}")
    return StorageError(f"{where}: {exc}")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def dir_manifest(local: str | Path) -> dict[str, dict[str, Any]]:
    """``{relative/posix/path: {"size", "sha256"}}`` of every file under ``local``."""
    root = Path(local)
    return {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _check_bucket(s3: Any, uri: str) -> None:
    bucket, _ = parse_s3(uri)
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        # HEAD responses carry no body, hence no error code: ask again with a GET to learn whether the
        # bucket is missing or the key was rejected.
        try:
            s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except Exception as exc:
            raise explain(exc, uri, "check bucket of") from None
        raise


def upload_dir(local: str | Path, uri: str, settings: S3Settings | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Upload every file under ``local`` to ``uri`` (multipart for large files) with a manifest."""
    root = Path(local)
    if not root.is_dir():
        raise StorageError(f"upload {root} → {uri}: {root} is not a directory")
    s3 = client(settings)
    _check_bucket(s3, uri)
    bucket, prefix = parse_s3(uri)
    files = dir_manifest(root)
    manifest = {"files": files, "total_bytes": sum(f["size"] for f in files.values())}
    cfg = _transfer_config(settings)
    bar = _bar(manifest["total_bytes"], f"upload {uri}", progress)
    for rel, info in files.items():
        key = f"{prefix}/{rel}" if prefix else rel
        try:
            s3.upload_file(str(root / rel), bucket, key, Config=cfg, Callback=bar.update,
                           ExtraArgs={"Metadata": {"sha256": info["sha256"]}})
        except Exception as exc:
            raise explain(exc, f"s3://{bucket}/{key}", "upload") from None
    bar.close()
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    mkey = f"{prefix}/{MANIFEST}" if prefix else MANIFEST
    try:
        s3.put_object(Bucket=bucket, Key=mkey, Body=body, ContentType="application/json")
    except Exception as exc:
        raise explain(exc, f"s3://{bucket}/{mkey}", "upload") from None
    return manifest


def _object_key(uri: str) -> tuple[str, str]:
    bucket, key = parse_s3(uri)
    if not key:
        raise StorageError(f"{uri!r}: the URI names no object (expected s3://BUCKET/KEY)")
    return bucket, key


def read_object(uri: str, s3: Any = None, action: str = "read") -> bytes | None:
    """The bytes of the object ``uri``, None when there is none (any other failure: a :class:`StorageError`)."""
    bucket, key = _object_key(uri)
    s3 = s3 or client()
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        if is_missing(exc):
            return None
        raise explain(exc, uri, action) from None


def exists(uri: str, s3: Any = None) -> bool:
    """Whether ``uri`` is an object (a prefix with objects under it is not one)."""
    bucket, key = _object_key(uri)
    s3 = s3 or client()
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if is_missing(exc):
            return False
        raise explain(exc, uri, "read") from None
    return True


def list_keys(uri: str, s3: Any = None) -> list[str]:
    """Every object key under the prefix ``uri``."""
    s3 = s3 or client()
    bucket, prefix = parse_s3(uri)
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            keys += [o["Key"] for o in page.get("Contents", [])]
    except Exception as exc:
        raise explain(exc, uri, "list") from None
    return keys


def _read_manifest(s3: Any, uri: str) -> dict[str, Any] | None:
    raw = read_object(join(uri, MANIFEST), s3, "read manifest")
    return None if raw is None else dict(json.loads(raw))


def join(uri: str, rel: str) -> str:
    """``s3://b/prefix`` + ``a/b`` → ``s3://b/prefix/a/b``."""
    return f"{uri.rstrip('/')}/{rel}"


def download_dir(uri: str, local: str | Path, settings: S3Settings | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Download everything under ``uri`` into ``local``, checking each file against the manifest."""
    s3 = client(settings)
    _check_bucket(s3, uri)
    bucket, prefix = parse_s3(uri)
    manifest = _read_manifest(s3, uri)
    if manifest is None:
        keys = [k for k in list_keys(uri, s3) if not k.endswith("/")]
        if not keys:
            raise StorageError(f"download {uri}: nothing stored under this prefix")
        files: dict[str, Any] = {k[len(prefix) + 1:] if prefix else k: None for k in keys}
    else:
        files = manifest["files"]
    root = Path(local)
    cfg = _transfer_config(settings)
    bar = _bar(sum((f or {}).get("size", 0) for f in files.values()), f"download {uri}", progress)
    for rel, info in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        key = f"{prefix}/{rel}" if prefix else rel
        try:
            s3.download_file(bucket, key, str(target), Config=cfg, Callback=bar.update)
        except Exception as exc:
            raise explain(exc, f"s3://{bucket}/{key}", "download") from None
        if info is not None and sha256_file(target) != info["sha256"]:
            raise StorageError(f"download s3://{bucket}/{key}: checksum mismatch (the manifest says "
                               f"sha256 {info['sha256'][:12]}…, the file has {sha256_file(target)[:12]}…)")
    bar.close()
    return {"files": files, "verified": manifest is not None, "manifest": manifest}


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False)


def copy_tree(src: str | Path, dst: str | Path, settings: S3Settings | None = None,
              progress: bool = False) -> str:
    """Copy a directory between any two of: a local path, an ``s3://`` URI.  Returns ``dst``."""
    s, d = str(src), str(dst)
    if is_s3(s) and is_s3(d):
        with tempfile.TemporaryDirectory(prefix="distillery-s3-") as tmp:
            download_dir(s, tmp, settings, progress)
            upload_dir(tmp, d, settings, progress)
    elif is_s3(d):
        upload_dir(s, d, settings, progress)
    elif is_s3(s):
        download_dir(s, d, settings, progress)
    else:
        if not Path(s).is_dir():
            raise StorageError(f"copy {s} → {d}: {s} is not a directory")
        shutil.copytree(s, d, dirs_exist_ok=True)
    return d


def upload_files(root: str | Path, uri: str, rels: list[str], settings: S3Settings | None = None) -> None:
    """Upload the files ``rels`` (relative to ``root``) under ``uri`` in that order, leaving the rest of the tree
    as it is, then record them in the tree's checksum manifest (created only when the prefix held nothing else),
    so a later :func:`download_dir` still verifies every file.  Callers put the file that makes the others
    visible (a repository manifest) last."""
    s3 = client(settings)
    _check_bucket(s3, uri)
    tree = _read_manifest(s3, uri)
    if tree is None:
        known = {k[len(parse_s3(uri)[1]):].lstrip("/") for k in list_keys(uri, s3)}
        tree = {"files": {}} if known <= set(rels) else None  # never hide files a partial manifest would omit
    cfg = _transfer_config(settings)
    for rel in rels:
        info = {"size": (Path(root) / rel).stat().st_size, "sha256": sha256_file(Path(root) / rel)}
        bucket, key = parse_s3(join(uri, rel))
        try:
            s3.upload_file(str(Path(root) / rel), bucket, key, Config=cfg,
                           ExtraArgs={"Metadata": {"sha256": info["sha256"]}})
        except Exception as exc:
            raise explain(exc, join(uri, rel), "upload") from None
        if tree is not None:
            tree["files"][rel] = info
    if tree is not None:
        tree["total_bytes"] = sum(int(f["size"]) for f in tree["files"].values())
        bucket, key = parse_s3(join(uri, MANIFEST))
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(tree, indent=1, sort_keys=True).encode(),
                          ContentType="application/json")
        except Exception as exc:
            raise explain(exc, join(uri, MANIFEST), "upload") from None


def _cached(uri: str, target: Path, settings: S3Settings | None) -> bool:
    """Whether ``target`` already holds the verified download of ``uri``: the same checksum manifest (written
    there after its files were checked) and every file of it at its size."""
    local = target / MANIFEST
    if not local.is_file():
        return False
    remote = _read_manifest(client(settings), uri)
    if remote is None or json.loads(local.read_text(encoding="utf-8")) != remote:
        return False
    return all((target / rel).is_file() and (target / rel).stat().st_size == info["size"]
               for rel, info in remote["files"].items())


def fetch(uri_or_path: str | Path, cache_dir: str | Path, settings: S3Settings | None = None) -> Path:
    """A local directory holding ``uri_or_path``: the path itself, or a verified download of the URI into
    ``cache_dir/BUCKET/PREFIX``, downloaded once: a later call (any process) finds the copy there, checked
    against the tree's manifest, and downloads nothing."""
    if not is_s3(uri_or_path):
        path = Path(uri_or_path)
        if not path.exists():
            raise StorageError(f"{path}: no such file or directory")
        return path
    bucket, prefix = parse_s3(str(uri_or_path))
    target = Path(cache_dir) / bucket / (prefix or "_root")
    if not _cached(str(uri_or_path), target, settings):
        (target / MANIFEST).unlink(missing_ok=True)  # an interrupted download must not look complete
        result = download_dir(str(uri_or_path), target, settings)
        if result["verified"]:  # written last: only a complete, checked copy is ever reused
            (target / MANIFEST).write_text(json.dumps(result["manifest"], indent=1, sort_keys=True),
                                           encoding="utf-8")
    return target
