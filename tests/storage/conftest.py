"""The S3 fixtures (`s3_server`, `s3_env`, `bucket`) live in tests/conftest.py."""
