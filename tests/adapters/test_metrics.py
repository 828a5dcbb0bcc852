"""Metrics from bus events, requests and the batcher's hooks, read back from the registry."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pyserving.adapters.metrics import (
    LEGAL_MOVES,
    UNKNOWN_MODEL,
    ServingMetrics,
    new_registry,
)
from pyserving.engine.bus import EventBus
from pyserving.engine.events import (
    EVENT_TYPES,
    AspiredVersion,
    AspiredVersions,
    BatchRun,
    LoadFailed,
    LoadSucceeded,
    Transition,
    UnloadFinished,
    VersionQuiesced,
)
from pyserving.engine.manager import MAX_ENDED_KEPT, Manager
from pyserving.engine.servable_map import ServableMap
from pyserving.statemachines.servable_version import (
    TRANSITIONS,
    MachineError,
    ServableVersionMachine,
    State,
)
from tests.servables import ConstantLoader
from tests.util.lifecycle import Lifecycle, machine_recording
from tests.util.metrics import samples


def make(models: set[str] | None = None) -> tuple[CollectorRegistry, ServingMetrics]:
    registry = new_registry()
    return registry, ServingMetrics(registry, known_models=lambda: models or {"mnist"})


def moves_the_machine_makes() -> set[tuple[str, str]]:
    """Every (from, to) a real version machine publishes, found by trying every trigger
    in every state it can reach (not by reading the table the metrics read)."""
    triggers = {t["trigger"] for t in TRANSITIONS}
    seen: set[tuple[str, str]] = set()
    paths: list[list[str]] = [[]]
    visited: set[str] = set()
    while paths:
        path = paths.pop()
        probe = ServableVersionMachine("m", 1, "/m/1", lambda **_move: None)
        for trigger in path:
            getattr(probe, trigger)()
        if probe.state in visited:
            continue
        visited.add(probe.state)
        for trigger in sorted(triggers):
            published: list[Transition] = []
            machine = machine_recording(published)
            for step in path:
                getattr(machine, step)()
            published.clear()
            try:
                getattr(machine, trigger)()
            except MachineError:
                continue
            seen.update((t.src, t.dst) for t in published)
            paths.append([*path, trigger])
    return seen


def test_legal_moves_are_the_machines_transitions() -> None:
    assert set(LEGAL_MOVES) == moves_the_machine_makes()
    assert len(LEGAL_MOVES) == len(set(LEGAL_MOVES)) == 7  # the diagram's seven arrows


@pytest.mark.parametrize(("src", "dst"), LEGAL_MOVES, ids=lambda s: str(s))
def test_each_transition_increments_exactly_one_series(src: str, dst: str) -> None:
    registry, metrics = make()
    metrics.handle(AspiredVersions(model="mnist", versions=(AspiredVersion(7, "/m/7"),)))
    before = samples(registry, "pyserving_servable_transitions_total")
    trigger = next(t["trigger"] for t in TRANSITIONS if (t["source"], t["dest"]) == (src, dst))
    metrics.handle(Transition(model="mnist", version=7, src=src, dst=dst, trigger=trigger))
    after = samples(registry, "pyserving_servable_transitions_total")
    changed = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    key = (("from_state", src), ("model", "mnist"), ("to_state", dst), ("version", "7"))
    assert changed == {key: 1.0}


def test_aspired_version_gets_zero_series_for_every_legal_move() -> None:
    """So Prometheus' increase() sees a version's first transitions, not a series born at 1."""
    registry, metrics = make()
    metrics.handle(AspiredVersions(model="mnist", versions=(AspiredVersion(1, "/m/1"),)))
    series = samples(registry, "pyserving_servable_transitions_total")
    assert {(dict(k)["from_state"], dict(k)["to_state"]) for k in series} == set(LEGAL_MOVES)
    assert set(series.values()) == {0.0}
    assert samples(registry, "pyserving_model_load_failures_total") == {(("model", "mnist"),): 0.0}
    assert samples(registry, "pyserving_model_load_seconds_count") == {(("model", "mnist"),): 0.0}


def test_load_unload_and_failure_facts() -> None:
    registry, metrics = make()
    metrics.handle(LoadSucceeded(model="mnist", version=1, duration_s=0.7))
    metrics.handle(
        LoadFailed(model="mnist", version=2, error="x", attempt=1, will_retry=True, duration_s=0.1)
    )
    metrics.handle(
        LoadFailed(model="mnist", version=2, error="x", attempt=2, will_retry=False, duration_s=0)
    )
    metrics.handle(UnloadFinished(model="mnist", version=1, duration_s=0.2))
    m = (("model", "mnist"),)
    assert samples(registry, "pyserving_model_load_seconds_count") == {m: 1.0}
    assert samples(registry, "pyserving_model_load_seconds_sum") == {m: pytest.approx(0.7)}
    assert samples(registry, "pyserving_model_load_failures_total") == {m: 2.0}
    assert samples(registry, "pyserving_model_unload_seconds_sum") == {m: pytest.approx(0.2)}


def test_events_are_counted_by_kind_and_every_kind_starts_at_zero() -> None:
    registry, metrics = make()
    assert set(samples(registry, "pyserving_events_total").values()) == {0.0}
    metrics.handle(UnloadFinished(model="mnist", version=1, duration_s=0.2))
    counted = {dict(k)["kind"]: v for k, v in samples(registry, "pyserving_events_total").items()}
    assert set(counted) == set(EVENT_TYPES)
    assert counted["unload_finished"] == 1.0 and sum(counted.values()) == 1.0


def test_versions_gauge_follows_a_real_manager_through_the_bus() -> None:
    bus = EventBus()
    manager = Manager(
        publish=bus.publish, loader_for=None, servable_map=ServableMap(), execute=False
    )
    registry = new_registry()
    metrics = ServingMetrics(registry, lambda: {"mnist"}, version_states=manager.states)
    bus.subscribe(manager.handle)
    bus.subscribe(metrics.handle)
    bus.start()
    try:
        bus.publish(AspiredVersions(model="mnist", versions=(AspiredVersion(1, "/m/1"),)))
        bus.wait_idle(5)
        gauge = samples(registry, "pyserving_servable_versions")
        assert gauge[(("model", "mnist"), ("state", "loading"))] == 1.0
        assert {dict(k)["state"] for k in gauge} == {s.value for s in State}
        bus.publish(LoadSucceeded(model="mnist", version=1, duration_s=0.1))
        bus.publish(AspiredVersions(model="mnist", versions=(AspiredVersion(2, "/m/2"),)))
        bus.wait_idle(5)
        gauge = samples(registry, "pyserving_servable_versions")
        assert gauge[(("model", "mnist"), ("state", "available"))] == 1.0
        assert gauge[(("model", "mnist"), ("state", "loading"))] == 1.0
        moves = {
            (dict(k)["version"], dict(k)["from_state"], dict(k)["to_state"])
            for k, v in samples(registry, "pyserving_servable_transitions_total").items()
            if v > 0
        }
        assert moves == {
            ("1", "new", "loading"),
            ("1", "loading", "available"),
            ("2", "new", "loading"),
        }
    finally:
        bus.stop()


def test_requests_for_unknown_models_share_one_label_value() -> None:
    registry, metrics = make()
    metrics.request_series("mnist", "Predict").observe("OK", 0.003)
    for i in range(50):
        metrics.request_series(f"user-typed-{i}", "Predict").observe("NOT_FOUND", 0.001)
    counts = samples(registry, "pyserving_requests_total")
    assert counts == {
        (("api", "Predict"), ("code", "OK"), ("model", "mnist")): 1.0,
        (("api", "Predict"), ("code", "NOT_FOUND"), ("model", UNKNOWN_MODEL)): 50.0,
    }
    assert b"user-typed" not in generate_latest(registry)
    assert samples(registry, "pyserving_request_seconds_count")[
        (("api", "Predict"), ("model", UNKNOWN_MODEL))
    ] == (50.0)


def test_batch_runs_rejections_and_queue_depths() -> None:
    registry, metrics = make()
    metrics.handle(
        BatchRun(
            model="mnist", version=1, signature="s", size=3, padded_size=4, oldest_wait_s=0.002
        )
    )
    metrics.handle(
        BatchRun(
            model="mnist", version=1, signature="s", size=8, padded_size=8, oldest_wait_s=0.004
        )
    )
    ms = (("model", "mnist"), ("signature", "s"))
    assert samples(registry, "pyserving_batch_size_sum") == {ms: 11.0}
    assert samples(registry, "pyserving_batch_size_count") == {ms: 2.0}
    assert samples(registry, "pyserving_batch_padding_rows_sum") == {ms: 1.0}
    assert samples(registry, "pyserving_batch_queue_seconds_sum") == {ms: pytest.approx(0.006)}
    buckets = samples(registry, "pyserving_batch_size_bucket")
    assert buckets[(("le", "2.0"), *ms)] == 0
    assert buckets[(("le", "4.0"), *ms)] == 1
    assert buckets[(("le", "8.0"), *ms)] == 2

    metrics.batch_rejected("mnist", "s", "queue_full")
    metrics.batch_rejected("mnist", "s", "queue_full")
    metrics.batch_rejected("nope", "s", "queue_full")
    assert samples(registry, "pyserving_batch_rejections_total") == {
        (*ms[:1], ("reason", "queue_full"), ms[1]): 2.0,
        (("model", UNKNOWN_MODEL), ("reason", "queue_full"), ("signature", "s")): 1.0,
    }

    assert samples(registry, "pyserving_batch_queue_depth") == {}
    depths = {("mnist", 1, "s"): 5}
    metrics.watch_queue_depths(lambda: depths)
    key = (("model", "mnist"), ("signature", "s"), ("version", "1"))
    assert samples(registry, "pyserving_batch_queue_depth") == {key: 5.0}
    depths[("mnist", 1, "s")] = 0  # read at scrape time, not copied
    assert samples(registry, "pyserving_batch_queue_depth") == {key: 0.0}


def test_registry_has_the_process_collector_and_is_private() -> None:
    registry_a, metrics_a = make()
    registry_b, _ = make()
    cpu = samples(registry_a, "process_cpu_seconds_total")
    assert len(cpu) == 1 and math.isfinite(next(iter(cpu.values())))
    assert samples(registry_a, "python_info")
    metrics_a.request_series("mnist", "Predict").observe("OK", 0.1)
    assert samples(registry_b, "pyserving_requests_total") == {}


def test_transition_series_of_versions_the_manager_forgot_are_removed() -> None:
    """A model with a new version every hour keeps a bounded number of series."""
    h = Lifecycle(ConstantLoader())
    registry = new_registry()
    metrics = ServingMetrics(registry, lambda: {"m"}, version_states=h.manager.states)
    h.bus.subscribe(metrics.handle)
    try:
        total = MAX_ENDED_KEPT + 5
        for version in range(1, total + 1):
            h.aspire(version)
        known = {str(v) for (_, v) in h.manager.states()}
        assert len(known) == MAX_ENDED_KEPT + 1  # the ended ones kept, and the serving one
        series = samples(registry, "pyserving_servable_transitions_total")
        assert {dict(k)["version"] for k in series} == known
        assert len(series) == len(known) * len(LEGAL_MOVES)
        h.aspire(1)  # a forgotten version aspired again: its series start again at zero
        series = samples(registry, "pyserving_servable_transitions_total")
        ones = {k: v for k, v in series.items() if dict(k)["version"] == "1"}
        assert len(ones) == len(LEGAL_MOVES)
        assert sum(ones.values()) == 2.0  # new -> loading -> available, counted afresh
    finally:
        h.close()


def test_quiesce_and_unload_are_timed_apart() -> None:
    registry, metrics = make()
    metrics.handle(VersionQuiesced(model="mnist", version=1, in_flight=3, drain_s=2.0))
    metrics.handle(UnloadFinished(model="mnist", version=1, duration_s=0.2))
    m = (("model", "mnist"),)
    assert samples(registry, "pyserving_model_quiesce_seconds_sum") == {m: pytest.approx(2.0)}
    assert samples(registry, "pyserving_model_unload_seconds_sum") == {m: pytest.approx(0.2)}
