"""The operator's pipeline backend is injected by kopf's entry module, never imported by the handlers.

``pipelines/operator.py`` wires ``pipelines.kfp_backend.KfpBackend`` into ``distillery.operator.handlers``; the
end-to-end test (test_operator_e2e.py) runs that module under ``kopf run`` against the KFP stub.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from distillery.operator import handlers
from distillery.operator.settings import OperatorSettings
from distillery.operator.status import RunSnapshot


@pytest.fixture()
def no_backend() -> Iterator[None]:
    saved = list(handlers._backend_factory)
    handlers._backend_factory.clear()
    handlers.backend.cache_clear()
    try:
        yield
    finally:
        handlers._backend_factory[:] = saved
        handlers.backend.cache_clear()


class FakeBackend:
    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings

    def find_run(self, name: str) -> str | None:
        return None

    def submit(self, name: str, experiment: str, arguments: object, placement: object = None) -> str:
        return "run-1"

    def get_run(self, run_id: str) -> RunSnapshot:
        return RunSnapshot(run_id=run_id, state="RUNNING", tasks={}, error="")


def test_handlers_without_an_injected_backend_say_how_to_start(no_backend: None) -> None:
    with pytest.raises(RuntimeError, match=r"kopf run -m pipelines\.operator"):
        handlers.backend()


def test_the_injected_factory_is_built_once_with_the_operator_settings(no_backend: None) -> None:
    handlers.use_backend(FakeBackend)
    first = handlers.backend()
    assert isinstance(first, FakeBackend) and first.settings is handlers.SETTINGS
    assert handlers.backend() is first


def test_pipelines_operator_injects_the_kfp_backend(no_backend: None) -> None:
    import importlib

    import pipelines.operator
    from pipelines.kfp_backend import KfpBackend

    importlib.reload(pipelines.operator)
    assert handlers._backend_factory == [KfpBackend]

