"""A real bus, serving map and manager wired as `pyserving serve` wires them, minus gRPC.

Tests of the manager, labels, live config and load timeouts drive it with facts (aspired
versions, labels) and real loaders (tests/servables.py), and wait on the bus, never on
sleeps alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pyserving.engine.bus import EventBus
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.events import (
    AspiredVersion,
    AspiredVersions,
    Event,
    Transition,
    VersionLabelsSet,
)
from pyserving.engine.manager import LoadAttempts, Manager
from pyserving.engine.policy import AspiredVersionPolicy
from pyserving.engine.servable import Loader
from pyserving.engine.servable_map import ServableMap
from pyserving.statemachines.servable_version import ServableVersionMachine, State
from tests.util.waiting import eventually

NO_RETRIES = LoadAttempts(max_num_load_retries=0, load_retry_interval_s=0.0)
SETTLED = (State.AVAILABLE, State.END, State.ERROR)


def machine_recording(
    published: list[Transition], model: str = "m", version: int = 1
) -> ServableVersionMachine:
    """A bare version machine whose moves are appended to `published` as Transitions, as
    the engine's harness publishes them."""

    def record(**move: Any) -> None:
        published.append(Transition(**move))

    return ServableVersionMachine(model, version, f"/{model}/{version}", record)


def all_settled(manager: Manager) -> bool:
    """True when no version is loading or unloading and nothing waits to be loaded."""
    return all(state in SETTLED for state in manager.states().values())


def settle(bus: EventBus, manager: Manager, timeout_s: float = 10.0) -> None:
    """Wait until every version has settled and the bus has dispatched what that caused."""

    def settled() -> bool:
        bus.wait_idle(5)
        return all_settled(manager)

    eventually(settled, timeout_s, 0.005, lambda: f"every version to settle: {manager.states()}")
    bus.wait_idle(5)


class Lifecycle:
    """Bus + serving map + manager, with every published event kept in `events`."""

    def __init__(
        self,
        loader: Loader,
        retry: LoadAttempts = NO_RETRIES,
        policy: AspiredVersionPolicy | None = None,
        allow_unavailable: bool = False,
        num_load_threads: int = 2,
        loader_for: Callable[[str], Loader] | None = None,
    ) -> None:
        """`loader_for` (model → loader) replaces the default: `loader` for every model."""
        self.loader = loader
        self.bus = EventBus()
        self.map = ServableMap()
        self.events: list[Event] = []
        self.manager = Manager(
            self.bus.publish,
            loader_for or (lambda _model: self.loader),
            self.map,
            policy=policy,
            retry=retry,
            num_load_threads=num_load_threads,
            allow_unavailable_labels=allow_unavailable,
        )
        self.bus.subscribe(self.manager.handle)
        self.bus.subscribe(self.events.append)
        self.bus.start()

    def aspire(self, *versions: int, model: str = "m", wait: bool = True) -> None:
        """Publish `model`'s aspired set; with `wait`, until every version settled."""
        self.bus.publish(
            AspiredVersions(
                model=model,
                versions=tuple(AspiredVersion(v, f"/{model}/{v}") for v in versions),
            )
        )
        if wait:
            self.settle()
        else:
            self.bus.wait_idle(5)

    def label(self, model: str = "m", **labels: int) -> None:
        self.bus.publish(VersionLabelsSet(model=model, labels=labels))
        self.bus.wait_idle(5)

    def settle(self) -> None:
        settle(self.bus, self.manager)

    def wait_label(self, label: str, version: int, model: str = "m") -> None:
        def resolved() -> bool:
            self.bus.wait_idle(5)
            return self.map.resolve(model, label=label) == version

        eventually(
            resolved,
            10,
            ignore=(ServingError,),
            message=lambda: f"label {label} to resolve to {version}: {self.map.labels(model)}",
        )

    def code(self, label: str, model: str = "m") -> Code:
        """The status a request naming `label` gets now (it must fail)."""
        with pytest.raises(ServingError) as info:
            self.map.resolve(model, label=label)
        return info.value.code

    def transitions(self) -> list[tuple[int, str, str]]:
        return [(e.version, e.src, e.dst) for e in self.events if isinstance(e, Transition)]

    def serving(self) -> dict[str, list[int]]:
        return {name: sorted(entry.versions) for name, entry in self.map.snapshot.items()}

    def close(self) -> None:
        self.manager.close()
        self.bus.stop()
