"""Fixtures of the A/B tests: a small synthetic query set."""

from __future__ import annotations

import pytest

from distillery.abtest.simulator import QueryGroup, build_queries
from distillery.data.synthetic import generate


@pytest.fixture(scope="session")
def queries() -> list[QueryGroup]:
    return build_queries(generate(1200, seed=3))
