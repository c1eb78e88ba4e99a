"""The S3 fixtures of tests/storage (a real S3 API server on loopback), for publishing runs."""

from tests.storage.conftest import bucket, s3_env, s3_server

__all__ = ["bucket", "s3_env", "s3_server"]
