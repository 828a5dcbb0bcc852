"""The manager drives machines from bus facts, keeps the serving map in step, and publishes."""

from __future__ import annotations

import time

from pyserving.engine.bus import EventBus
from pyserving.engine.events import (
    AspiredVersion,
    AspiredVersions,
    LoadFailed,
    ShutdownRequested,
)
from pyserving.engine.manager import LoadAttempts, Manager
from pyserving.engine.policy import ResourcePreservingPolicy
from pyserving.engine.servable_map import ServableMap
from pyserving.statemachines.servable_version import State
from tests.servables import ConstantLoader, GatedLoader
from tests.util.lifecycle import NO_RETRIES, Lifecycle
from tests.util.waiting import eventually


def test_swap_loads_new_before_unloading_old() -> None:
    h = Lifecycle(ConstantLoader())
    h.aspire(1)
    with h.map.acquire("m") as handle:
        assert handle.version == 1
    h.aspire(2)
    with h.map.acquire("m") as handle:
        assert handle.version == 2
    assert h.transitions() == [
        (1, "new", "loading"),
        (1, "loading", "available"),
        (2, "new", "loading"),
        (2, "loading", "available"),
        (1, "available", "unloading"),
        (1, "unloading", "end"),
    ]
    statuses = {s.version: s.state for s in h.manager.statuses("m") or []}
    assert statuses == {1: State.END, 2: State.AVAILABLE}
    h.close()


def test_failed_load_keeps_the_serving_version() -> None:
    h = Lifecycle(ConstantLoader(failing=["/m/2"]))
    h.aspire(1)
    h.aspire(2)
    with h.map.acquire("m") as handle:
        assert handle.version == 1
    status = {s.version: s for s in h.manager.statuses("m") or []}
    assert status[2].state == State.ERROR
    assert "cannot read /m/2" in status[2].error
    assert status[1].state == State.AVAILABLE
    h.close()


def test_load_retries_then_errors() -> None:
    loader = ConstantLoader(failing=["/m/1"])
    h = Lifecycle(loader, LoadAttempts(max_num_load_retries=2, load_retry_interval_s=0.0))
    h.aspire(1)
    failures = [e for e in h.events if isinstance(e, LoadFailed)]
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True), (3, False)]
    assert loader.loads == ["/m/1"] * 3
    assert h.transitions() == [(1, "new", "loading"), (1, "loading", "error")]
    h.close()


def test_reaspiring_a_retired_version_loads_it_again() -> None:
    loader = ConstantLoader(failing=["/m/2"])
    h = Lifecycle(loader)
    h.aspire(1)
    h.aspire(2)
    h.aspire(1)  # 2 no longer wanted: retired
    loader.failing.clear()
    h.aspire(2)  # fixed and back: a fresh machine
    with h.map.acquire("m") as handle:
        assert handle.version == 2
    assert (2, "error", "end") in h.transitions()
    h.close()


def test_shutdown_unloads_everything() -> None:
    h = Lifecycle(ConstantLoader())
    h.aspire(1)
    h.bus.publish(ShutdownRequested(reason="test"))
    h.settle()
    assert dict(h.manager.states()) == {("m", 1): State.END}
    assert "m" not in h.map.snapshot
    h.close()


def test_empty_aspired_set_unloads() -> None:
    h = Lifecycle(ConstantLoader())
    h.aspire(1)
    h.aspire()
    assert h.manager.states()[("m", 1)] == State.END
    h.close()


def test_resource_policy_unloads_before_loading_through_the_manager() -> None:
    h = Lifecycle(ConstantLoader(), policy=ResourcePreservingPolicy())
    h.aspire(1)
    h.aspire(2)
    assert h.transitions() == [
        (1, "new", "loading"),
        (1, "loading", "available"),
        (1, "available", "unloading"),
        (1, "unloading", "end"),
        (2, "new", "loading"),
        (2, "loading", "available"),
    ]
    h.close()


def test_a_slow_load_of_one_model_never_delays_another() -> None:
    loader = GatedLoader(gated=["/slow/1"])
    bus, serving = EventBus(), ServableMap()
    manager = Manager(
        bus.publish, lambda _model: loader, serving, retry=NO_RETRIES, num_load_threads=2
    )
    bus.subscribe(manager.handle)
    bus.start()
    for model in ("slow", "fast"):
        bus.publish(AspiredVersions(model=model, versions=(AspiredVersion(1, f"/{model}/1"),)))
    # "fast" loads in parallel with the stuck one.
    eventually(lambda: "fast" in serving.snapshot, message=lambda: f"fast: {manager.states()}")
    assert "/slow/1" in loader.started and manager.states()[("slow", 1)] == State.LOADING
    started = time.monotonic()
    with serving.acquire("fast") as handle:  # a request to the other model: no wait
        assert handle.servable.run("", {}, [])["version"][0] == 1
    assert time.monotonic() - started < 1.0
    loader.open("/slow/1")
    eventually(lambda: "slow" in serving.snapshot, message=lambda: f"slow: {manager.states()}")
    manager.close()
    bus.stop()


def test_ended_versions_are_remembered_up_to_a_bound() -> None:
    from pyserving.engine.manager import MAX_ENDED_KEPT

    h = Lifecycle(ConstantLoader())
    total = MAX_ENDED_KEPT + 5
    for version in range(1, total + 1):
        h.aspire(version)
    statuses = h.manager.statuses("m") or []
    ended = [s.version for s in statuses if s.state == State.END]
    assert len(ended) == MAX_ENDED_KEPT
    assert ended == list(range(total - MAX_ENDED_KEPT, total))  # the most recent ones
    assert [s.version for s in statuses if s.state == State.AVAILABLE] == [total]
    h.close()
