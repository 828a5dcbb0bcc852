"""Waiting until a bus and its manager have nothing left to do: every version settled."""

from __future__ import annotations

import time

from pyserving.engine.bus import EventBus
from pyserving.engine.manager import Manager
from pyserving.statemachines.servable_version import State

SETTLED = frozenset({State.AVAILABLE, State.END, State.ERROR})


def settle(bus: EventBus, manager: Manager, timeout_s: float = 20.0) -> None:
    """Return once the bus is idle and no version is new, loading or unloading (then once
    more idle: the last transitions' own subscribers have run). AssertionError naming
    the states if that takes longer than `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        bus.wait_idle(5)
        if all(state in SETTLED for state in manager.states().values()):
            bus.wait_idle(5)
            return
        time.sleep(0.005)
    raise AssertionError(f"did not settle: {manager.states()}")
