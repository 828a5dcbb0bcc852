"""One version's harness: retries, the load timeout, quiesce before unload, one loader."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from pyserving.adapters.loaders.model_loaders import ModelLoaders
from pyserving.adapters.loaders.platforms import PYTHON, PlatformOptions
from pyserving.engine.events import (
    AspiredVersion,
    AspiredVersions,
    Event,
    LoadFailed,
    LoadSucceeded,
    UnloadFinished,
    VersionQuiesced,
)
from pyserving.engine.harness import LoadAttempts, LoaderHarness
from pyserving.engine.load_timeout import TimedLoads
from pyserving.engine.servable import Loader
from pyserving.engine.servable_map import ServableHandle
from pyserving.statemachines.servable_version import State
from tests.servables import ConstantLoader, ConstantServable, GatedLoader
from tests.util.lifecycle import Lifecycle
from tests.util.python_models import write_scaling_version
from tests.util.waiting import eventually

WAIT_S = 10.0


class Published:
    """The harness's `publish`: every fact, with the monotonic time it was published."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def wait_for(self, kind: type[Event], count: int = 1) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.of(kind)) >= count, WAIT_S)
        assert ok, f"no {kind.__name__} published: {self.events}"


def harness(
    loader: Loader | None,
    retry: LoadAttempts,
    published: Published,
    path: str = "/m/1",
    stopping: threading.Event | None = None,
) -> LoaderHarness:
    return LoaderHarness(
        "m",
        int(path.rsplit("/", 1)[-1]),
        path,
        published,
        loader,
        retry,
        TimedLoads(retry.load_timeout_s, max_abandoned=1),
        stopping or threading.Event(),
    )


def test_a_failing_load_is_retried_then_reported_as_the_last_attempt() -> None:
    loader, published = ConstantLoader(failing=["/m/1"]), Published()
    h = harness(loader, LoadAttempts(max_num_load_retries=2, load_retry_interval_s=0.0), published)
    h.load()
    failures = published.of(LoadFailed)
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True), (3, False)]
    assert all("OSError: cannot read /m/1" in f.error for f in failures)
    assert loader.loads == ["/m/1"] * 3 and h.attempts == 3 and h.servable is None
    assert not published.of(LoadSucceeded)


def test_a_retry_that_succeeds_keeps_the_servable_for_the_manager() -> None:
    loader, published = ConstantLoader(failing=["/m/1"]), Published()
    h = harness(loader, LoadAttempts(max_num_load_retries=3, load_retry_interval_s=0.0), published)
    original = loader.load

    def load_then_heal(path: str) -> ConstantServable:
        try:
            return original(path)
        finally:
            loader.failing.clear()  # the second attempt finds the folder fixed

    # ignored below: the test swaps in a loader that fails first
    loader.load = load_then_heal  # type: ignore[method-assign]
    h.load()
    assert [f.attempt for f in published.of(LoadFailed)] == [1]
    [ok] = published.of(LoadSucceeded)
    assert ok.version == 1 and h.attempts == 2
    assert isinstance(h.servable, ConstantServable) and h.servable.version == 1


def test_shutdown_during_the_retry_interval_ends_the_retries_at_once() -> None:
    loader, published, stopping = ConstantLoader(failing=["/m/1"]), Published(), threading.Event()
    retry = LoadAttempts(max_num_load_retries=5, load_retry_interval_s=60.0)
    h = harness(loader, retry, published, stopping=stopping)
    job = threading.Thread(target=h.load)
    job.start()
    published.wait_for(LoadFailed)  # the first attempt failed: now waiting 60 s to retry
    stopping.set()
    job.join(WAIT_S)
    assert not job.is_alive()
    failures = published.of(LoadFailed)
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (1, False)]
    assert failures[-1].error == "load cancelled: server shutting down"
    assert loader.loads == ["/m/1"]


def test_an_attempt_past_the_load_timeout_fails_and_is_not_kept() -> None:
    loader, published = GatedLoader(gated=["/m/1"]), Published()
    retry = LoadAttempts(max_num_load_retries=0, load_retry_interval_s=0.0, load_timeout_s=0.2)
    h = harness(loader, retry, published)
    h.load()  # returns once the attempt is abandoned
    [failed] = published.of(LoadFailed)
    assert "timed out after 0.2s" in failed.error and not failed.will_retry
    loader.open("/m/1")
    assert h.servable is None and not published.of(LoadSucceeded)


def test_unload_quiesces_first_and_times_the_unload_alone() -> None:
    published = Published()
    h = harness(ConstantLoader(), LoadAttempts(0, 0.0), published)
    servable = ConstantServable(1)
    handle = ServableHandle("m", 1, servable)
    assert handle.acquire()  # a request in flight
    job = threading.Thread(target=h.unload, args=(handle,))
    job.start()
    eventually(lambda: handle.retiring, WAIT_S, 0.005, "the unload to begin")
    assert not handle.acquire()  # quiescing: no new request gets the version
    time.sleep(0.3)  # the request runs on for a while: the drain lasts at least this long
    handle.release()
    job.join(WAIT_S)
    (t_quiet, quiesced), (t_done, finished) = published.events
    assert isinstance(quiesced, VersionQuiesced) and isinstance(finished, UnloadFinished)
    assert quiesced.in_flight == 1 and quiesced.drain_s >= 0.3
    # The unload's duration starts at the quiesced point: it cannot hold the drain.
    assert finished.duration_s <= t_done - t_quiet + 0.001
    assert servable.unloaded and h.servable is None


def test_unload_of_a_version_that_never_served_publishes_only_its_end() -> None:
    published = Published()
    h = harness(ConstantLoader(), LoadAttempts(0, 0.0), published)
    h.unload(None)
    assert [type(e) for _, e in published.events] == [UnloadFinished]


def test_the_platform_loader_is_resolved_once_when_the_version_is_aspired(
    tmp_path: Path,
) -> None:
    base = tmp_path / "m"
    for version in (1, 2):
        write_scaling_version(base, version, factor=float(version))
    platforms: list[str] = []

    def platform_of(model: str) -> str:
        platforms.append(model)
        return PYTHON

    loaders = ModelLoaders(PlatformOptions(), lambda _event: None, platform_of)
    retry = LoadAttempts(max_num_load_retries=2, load_retry_interval_s=0.0)
    h = Lifecycle(ConstantLoader(), retry=retry, loader_for=loaders)
    try:
        h.bus.publish(_aspired(base, 1))
        h.settle()
        assert platforms == ["m"] and h.serving() == {"m": [1]}
        h.bus.publish(_aspired(base, 1))  # the same set again: version 1's harness stays
        h.settle()
        assert platforms == ["m"]
        h.bus.publish(_aspired(base, 1, 2))
        h.settle()
        assert platforms == ["m", "m"]  # one lookup per newly aspired version, none per load
        with h.map.acquire("m") as handle:
            out = handle.servable.run("serving_default", {"x": np.ones((1, 2), np.float32)}, [])
        assert handle.version == 2 and out["y"].tolist() == [4.0]
        h.bus.publish(_aspired(base, 1, 2, 9))  # 9 has no folder: three attempts, one lookup
        h.settle()
        assert [e.attempt for e in h.events if isinstance(e, LoadFailed)] == [1, 2, 3]
        assert platforms == ["m", "m", "m"]
    finally:
        h.close()


def test_a_platform_that_cannot_be_resolved_fails_the_version_with_its_reason() -> None:
    def loader_for(model: str) -> Loader:
        raise LookupError(f"model {model!r} is no longer configured")

    h = Lifecycle(ConstantLoader(), loader_for=loader_for)
    try:
        h.aspire(1)
        [status] = h.manager.statuses("m") or []
        assert status.state == State.ERROR
        assert "model 'm' is no longer configured" in status.error
    finally:
        h.close()


def _aspired(base: Path, *versions: int) -> Event:
    return AspiredVersions(
        model="m", versions=tuple(AspiredVersion(v, str(base / str(v))) for v in versions)
    )
