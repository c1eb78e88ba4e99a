"""Bad input campaign: every command and loader refuses malformed input with a one-line message naming
the file, line, field or resource, a non-zero exit, and no output left behind that looks finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.badinput.cases import CASES, CATEGORIES
from tests.badinput.harness import Case, Fixtures, run_case


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("badinput-models"))


def test_the_campaign_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert {c.category for c in CASES} == set(CATEGORIES)
    assert len({(c.category, c.name) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[f"{c.category}-{c.name}" for c in CASES])
def test_bad_input_fails_cleanly(bad: Case, tmp_path: Path, fixtures: Fixtures) -> None:
    outcome = run_case(bad, tmp_path, fixtures)
    assert outcome.clean, outcome.problem
