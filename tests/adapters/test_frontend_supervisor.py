"""The front-ends' supervisor with real processes: a front-end that cannot start stops the
server's start with its reason (restarts and exits under load: tests/reliability/
test_workers.py)."""

from __future__ import annotations

import asyncio

import pytest

from pyserving.adapters.frontend_supervisor import (
    FrontendStartError,
    FrontendSupervisor,
    signal_name,
)
from pyserving.engine.events import Event, FrontendStarted


def test_a_frontend_that_exits_during_start_up_fails_the_start_with_its_reason() -> None:
    published: list[Event] = []
    # --engine_pid of a process that is not its parent: the front-end exits 1 at once.
    supervisor = FrontendSupervisor(
        2, lambda worker: ["--engine_address=ipc:///nowhere", "--engine_pid=1"], published.append
    )

    async def start() -> None:
        await supervisor.start(timeout_s=60)

    with pytest.raises(FrontendStartError, match="front-end 0 exited during start-up"):
        asyncio.run(start())
    assert not [e for e in published if isinstance(e, FrontendStarted)]  # none listened


def test_signal_names_for_exit_codes() -> None:
    assert signal_name(-9) == "SIGKILL"
    assert signal_name(-15) == "SIGTERM"
    assert signal_name(0) == signal_name(1) == signal_name(None) == ""
