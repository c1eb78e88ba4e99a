"""Data files on S3: the ``s3://`` target of a data spec is downloaded through :mod:`distillery.storage`
(endpoint and credentials from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` and ``AWS_*``), then read by
the same loader as a local file.  An object is one file; a prefix with objects under it is a directory
(a parquet dataset).  Errors are :class:`DataError` naming the URI, never the temporary copy.

    from distillery.data.spec import load
    pairs, report = load("parquet:s3://distillery-data/esci/shopping_queries.parquet")
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from distillery.data.schema import DataError
from distillery.storage import S3_OBJECT, is_s3

T = TypeVar("T")


def check_target(target: str, spec: str) -> None:
    """A spec's target is a local path (no ``:``) or ``s3://BUCKET/KEY``; anything else names the spec."""
    if is_s3(target):
        if not S3_OBJECT.match(target):
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
        is_object = storage.exists(uri, s3)
    except storage.StorageError as exc:
        raise DataError(str(exc)) from None
    if not is_object:  # a prefix holding a dataset (a directory of parquet files)
        try:
            storage.download_dir(uri, local)
        except storage.StorageError as dir_err:
            if "nothing stored under this prefix" in str(dir_err):
                raise DataError(f"{uri}: no such file") from None
            raise DataError(str(dir_err)) from None
        return local
    try:
        s3.download_file(bucket, key, str(local))
    except Exception as exc:
        raise DataError(str(storage.explain(exc, uri, "download"))) from None
    return local


@contextmanager
def localised(target: str) -> Iterator[str]:
    """A local path holding ``target``: the path itself, or a temporary download of an ``s3://`` URI."""
    if not is_s3(target):
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
