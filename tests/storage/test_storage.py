"""The artifact store against a real S3 API server on loopback (moto's ThreadedMotoServer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distillery import storage
from distillery.storage import MANIFEST, S3Settings, StorageError


def _model_dir(root: Path, big_mb: int = 0) -> Path:
    d = root / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"a": 1}')
    (d / "sub" / "vocab.txt").write_text("x\ny\n" * 100)
    if big_mb:
        (d / "model.safetensors").write_bytes(os.urandom(big_mb * 1024 * 1024))
    return d


def test_parse_s3_uris() -> None:
    assert storage.parse_s3("s3://bkt/a/b/") == ("bkt", "a/b")
    assert storage.parse_s3("s3://bkt") == ("bkt", "")
    with pytest.raises(StorageError, match="names no bucket"):
        storage.parse_s3("s3:///x")
    assert not storage.is_s3("/tmp/x") and storage.is_s3("s3://b/k")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s = S3Settings.from_env()
    assert (s.endpoint_url, s.region) == ("http://minio:9000", "eu-west-1")


def test_multipart_directory_round_trip(bucket: str, tmp_path: Path) -> None:
    """A >20 MB directory goes up in multipart chunks and comes back byte-for-byte."""
    src = _model_dir(tmp_path, big_mb=21)
    uri = f"s3://{bucket}/runs/r1/student"
    manifest = storage.upload_dir(src, uri, S3Settings.from_env())
    assert manifest["total_bytes"] > 20 * 1024 * 1024
    s3 = storage.client()
    head = s3.head_object(Bucket=bucket, Key="runs/r1/student/model.safetensors")
    # a multipart ETag is "<md5 of part md5s>-<number of parts>"
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
    assert head["Metadata"]["sha256"] == storage.sha256_file(src / "model.safetensors")
    stored = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/r1/student/{MANIFEST}")["Body"].read())
    assert set(stored["files"]) == {"config.json", "sub/vocab.txt", "model.safetensors"}

    out = storage.download_dir(uri, tmp_path / "back")
    assert out["verified"]
    assert storage.dir_manifest(tmp_path / "back") == storage.dir_manifest(src)


def test_checksum_mismatch_is_detected(bucket: str, tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    uri = f"s3://{bucket}/m"
    storage.upload_dir(src, uri)
    storage.client().put_object(Bucket=bucket, Key="m/config.json", Body=b'{"a": 2}')  # corrupted behind our back
    with pytest.raises(StorageError, match=r"m/config.json: checksum mismatch"):
        storage.download_dir(uri, tmp_path / "back")


def test_missing_bucket_is_a_clear_error(s3_env: str, tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.upload_dir(src, "s3://no-such-bucket/x")
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.download_dir("s3://no-such-bucket/x", tmp_path / "d")


def test_empty_prefix_and_unreachable_endpoint(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    with pytest.raises(StorageError, match="nothing stored under this prefix"):
        storage.download_dir(f"s3://{bucket}/nothing", tmp_path / "d")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        storage.download_dir(f"s3://{bucket}/x", tmp_path / "d")


def test_copy_tree_and_fetch_every_direction(bucket: str, tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    storage.copy_tree(src, tmp_path / "local-copy")
    storage.copy_tree(tmp_path / "local-copy", f"s3://{bucket}/a")
    storage.copy_tree(f"s3://{bucket}/a", f"s3://{bucket}/b")
    got = storage.fetch(f"s3://{bucket}/b", tmp_path / "cache")
    assert storage.dir_manifest(got) == storage.dir_manifest(src)
    assert storage.fetch(src, tmp_path / "cache") == src
    with pytest.raises(StorageError, match="no such file"):
        storage.fetch(tmp_path / "absent", tmp_path / "cache")


def test_wrong_credentials_are_a_clear_error(s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """With IAM checking on (moto's reset-auth), a real key works and a made-up one is rejected."""
    import requests

    iam = _iam_client(s3_env)
    iam.create_user(UserName="pipeline")
    iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="pipeline")["AccessKey"]
    storage.client().create_bucket(Bucket="secured")
    requests.post(f"{s3_env}/moto-api/reset-auth", data=b"0", timeout=5)
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        storage.upload_dir(_model_dir(tmp_path), "s3://secured/ok")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        with pytest.raises(StorageError, match=r"credentials were rejected \(InvalidAccessKeyId\)"):
            storage.download_dir("s3://secured/ok", tmp_path / "d")
    finally:
        requests.post(f"{s3_env}/moto-api/reset-auth", data=b"inf", timeout=5)


def _iam_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")


def test_fetch_downloads_once_and_again_only_when_the_tree_changed(bucket: str, tmp_path: Path) -> None:
    """A second process fetching the same URI (a new call: no in-process cache) reuses the verified copy."""
    uri = f"s3://{bucket}/teacher"
    src = _model_dir(tmp_path)
    storage.upload_dir(src, uri)
    cache = tmp_path / "cache"
    first = storage.fetch(uri, cache)
    assert storage.dir_manifest(first) == storage.dir_manifest(src)
    # With the object gone from the store, only a fetch that downloads nothing can still succeed.
    storage.client().delete_object(Bucket=bucket, Key="teacher/config.json")
    assert storage.fetch(uri, cache) == first
    # A new upload (another manifest) is downloaded again.
    (src / "config.json").write_text('{"a": 2}')
    storage.upload_dir(src, uri)
    assert (storage.fetch(uri, cache) / "config.json").read_text() == '{"a": 2}'
    # A local copy that lost a file is not reused either.
    (first / "sub" / "vocab.txt").unlink()
    assert (storage.fetch(uri, cache) / "sub" / "vocab.txt").exists()


def test_read_object_exists_and_upload_files(bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/repo"
    assert storage.read_object(f"{uri}/x.json") is None and not storage.exists(f"{uri}/x.json")
    src = _model_dir(tmp_path)
    storage.upload_dir(src, uri)
    (src / "new.txt").write_text("new")
    storage.upload_files(src, uri, ["new.txt"])
    assert storage.read_object(f"{uri}/new.txt") == b"new" and storage.exists(f"{uri}/new.txt")
    # the tree's checksum manifest records the new file, so a download still verifies all of it
    back = storage.download_dir(uri, tmp_path / "back")
    assert back["verified"] and (tmp_path / "back" / "new.txt").read_text() == "new"
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.read_object("s3://no-such-bucket/x")
