"""Data files on S3: the ``s3://`` target of a data spec is downloaded through :mod:`distillery.storage`
(endpoint and credentials from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` and ``AWS_*``), then read by
the same loader as a local file.  An object is one file; a prefix with objects under it is a directory
(a parquet dataset).  Errors are :class:`DataError` naming the URI, never the temporary copy.

    from distillery.data.spec import load
    pairs, report = load("parquet:s3://distillery-data/esci/shopping_queries.parquet")
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from distillery.data.schema import DataError

S3_TARGET = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,62}/[^,]+$")
"""An S3 data target: a bucket name as S3 allows it and a non-empty key (the CRD's pattern says the same)."""

T = TypeVar("T")


def is_remote(target: str) -> bool:
    return target.startswith("s3://")


def check_target(target: str, spec: str) -> None:
    """A spec's target is a local path (no ``:``) or ``s3://BUCKET/KEY``; anything else names the spec."""
    if is_remote(target):
        if not S3_TARGET.match(target):
            raise DataError(f"data spec {spec!r}: {target!r} is not s3://BUCKET/KEY")
    elif ":" in target:
        raise DataError(f"data spec {spec!r}: {target!r}: only local paths and s3://BUCKET/KEY are supported")


def _download(uri: str, dest: Path) -> Path:
    """``uri`` downloaded under ``dest``, keeping its base name (loaders read the suffix: ``.gz``, ``.parquet``)."""
    from distillery import storage

    bucket, key = storage.parse_s3(uri)
    local = dest / Path(key).name
    s3 = storage.client()
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        err = storage._explain(exc, uri, "read")
        if not str(err).endswith("no such object"):
            raise DataError(str(err)) from None
        try:  # not an object: a prefix holding a dataset (a directory of parquet files)
            storage.download_dir(uri, local)
        except storage.StorageError as dir_err:
            if "nothing stored under this prefix" in str(dir_err):
                raise DataError(f"{uri}: no such file") from None
            raise DataError(str(dir_err)) from None
        return local
    try:
        s3.download_file(bucket, key, str(local))
    except Exception as exc:
        raise DataError(str(storage._explain(exc, uri, "download"))) from None
    return local


@contextmanager
def localised(target: str) -> Iterator[str]:
    """A local path holding ``target``: the path itself, or a temporary download of an ``s3://`` URI."""
    if not is_remote(target):
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="distillery-data-") as tmp:
        yield str(_download(target, Path(tmp)))


def read(target: str, loader: Callable[[str], T]) -> T:
    """``loader(local path)`` on ``target``; a :class:`DataError` names ``target`` instead of the local copy."""
    with localised(target) as local:
        try:
            return loader(local)
        except DataError as exc:
            if local == target:
                raise
            raise DataError(str(exc).replace(local, target)) from None
