"""Shared fixtures: offline settings, the ESCI path, tiny configs."""

from __future__ import annotations

import os
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
