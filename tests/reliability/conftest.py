"""Reliability suites: the e2e fixtures (imported, not copied), size switch, process probes.

CI size by default (the whole folder in a few minutes on two cores); `pytest --long` or
PYSERVING_LONG=1 runs the big version. Each suite prints a `RELIABILITY {...}` line of
figures (requests, failures, swaps, faults, cases, memory) for the report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyserving.adapters.event_log import read_events
from pyserving.engine.events import Event, Transition
from tests.e2e.conftest import (  # noqa: F401 - fixtures are used by name
    TrainedModels,
    module_workers,
    predict_request,
    start_server,
    trained_models,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything here is `reliability` (and `e2e`: it runs real servers)."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.e2e)


def long_run(config: pytest.Config) -> bool:
    return bool(config.getoption("--long", default=False)) or os.environ.get(
        "PYSERVING_LONG", ""
    ) not in ("", "0")


@dataclass(frozen=True)
class Size:
    """Whether this is the big run; `pick(ci, big)` chooses a figure accordingly."""

    long: bool

    def pick(self, ci: int, big: int) -> int:
        return big if self.long else ci


@pytest.fixture(scope="session")
def size(pytestconfig: pytest.Config) -> Size:
    return Size(long_run(pytestconfig))


def report(suite: str, **figures: object) -> None:
    """Print one line of figures; `pytest -s` (or the captured output on failure) shows it."""
    print("RELIABILITY " + json.dumps({"suite": suite, **figures}, sort_keys=True))


def transitions(log: Path) -> list[Transition]:
    return [e for e in read_events(log) if isinstance(e, Transition)]


def events(log: Path) -> list[Event]:
    return list(read_events(log))
