"""Shared fixtures: offline settings, the ESCI path, tiny configs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
ESCI = REPO.parent / "shared" / "data" / "esci-us" / "esci_us_dev.tsv.gz"


@pytest.fixture(scope="session")
def esci_path() -> Path:
    if not ESCI.exists():
        pytest.fail(f"the ESCI benchmark file is missing: {ESCI} (shared/ must sit beside the checkout)")
    return ESCI


@pytest.fixture()
def tiny_config():
    from distillery.config import load_config

    return load_config("tiny")


# A real S3 API server (moto) on loopback, and the environment a cluster pod would have.
@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture()
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Endpoint and credentials from the environment, exactly as the library reads them on a cluster."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_server


@pytest.fixture()
def bucket(s3_env: str) -> str:
    import uuid

    from distillery.storage import client

    name = f"b-{uuid.uuid4().hex[:12]}"
    client().create_bucket(Bucket=name)
    return name
