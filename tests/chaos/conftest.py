"""The chaos suite: every test here is marked ``chaos`` (``pytest -m chaos`` runs only them)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from tests.chaos.harness import Load, ProviderProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def figures(capsys: Any) -> Callable[[Load, str], str]:
    """``figures(load, scenario)``: checks no call was lost and prints the figures past pytest's capture."""
    def report(load: Load, scenario: str) -> str:
        line = load.report(scenario)
        with capsys.disabled():
            print(f"\n{line}")
        return line

    return report


@pytest.fixture
def providers() -> Iterator[Callable[..., ProviderProcess]]:
    """``providers(address, name)``: a provider process, killed at the end of the test if still running."""
    started: list[ProviderProcess] = []

    def start(address: str, name: str, grace: float = 2.0) -> ProviderProcess:
        process = ProviderProcess(address, name, grace)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
