"""--load_timeout_seconds: a hung load fails the version; its late result is discarded."""

from __future__ import annotations

import threading
import time

import pytest

from pyserving.engine.events import LoadFailed
from pyserving.engine.load_timeout import LoadTimedOut, TimedLoads
from pyserving.engine.manager import LoadAttempts
from pyserving.statemachines.servable_version import State
from tests.servables import ConstantServable, GatedLoader
from tests.util.lifecycle import Lifecycle
from tests.util.waiting import eventually


class RecordingLoader(GatedLoader):
    """Remembers every servable it returned, to see what became of a late one."""

    def __init__(self, gated: list[str]) -> None:
        super().__init__(gated)
        self.returned: list[ConstantServable] = []

    def load(self, path: str) -> ConstantServable:
        servable = super().load(path)
        self.returned.append(servable)
        return servable


def test_a_hung_load_fails_and_its_late_result_is_unloaded_never_served() -> None:
    loader = RecordingLoader(gated=["/m/2"])
    retry = LoadAttempts(max_num_load_retries=0, load_retry_interval_s=0.0, load_timeout_s=0.3)
    h = Lifecycle(loader, retry)
    h.aspire(1)
    started = time.monotonic()
    h.aspire(1, 2)  # 2 hangs in its loader until the gate opens
    assert time.monotonic() - started < 10
    [failed] = [e for e in h.events if isinstance(e, LoadFailed)]
    assert failed.version == 2 and not failed.will_retry
    assert "timed out after 0.3s" in failed.error
    status = {s.version: s for s in h.manager.statuses("m") or []}
    assert status[2].state == State.ERROR and "--load_timeout_seconds" in status[2].error
    assert status[1].state == State.AVAILABLE
    assert [s.version for s in loader.returned] == [1]
    loader.open("/m/2")  # the abandoned thread finishes its load now
    eventually(
        lambda: len(loader.returned) == 2 and loader.returned[1].unloaded,
        message="the late load to be discarded",
    )
    assert loader.returned[1].version == 2  # discarded: unloaded by the abandoned thread itself
    h.bus.wait_idle(5)
    assert set(h.map.snapshot["m"].versions) == {1}
    assert {s.version: s.state for s in h.manager.statuses("m") or []}[2] == State.ERROR
    h.close()


def test_loads_within_the_limit_are_untouched() -> None:
    loader = GatedLoader()
    h = Lifecycle(loader, LoadAttempts(max_num_load_retries=0, load_timeout_s=5.0))
    h.aspire(1)
    with h.map.acquire("m") as handle:
        assert handle.version == 1
    assert not [e for e in h.events if isinstance(e, LoadFailed)]
    h.close()


def test_abandoned_threads_are_bounded_and_errors_pass_through() -> None:
    gate = threading.Event()
    timed = TimedLoads(0.05, max_abandoned=1)
    with pytest.raises(LoadTimedOut, match="timed out"):
        # ignored below: a job that returns False when the gate times out
        timed.run(lambda: gate.wait(30) and ConstantServable(1), "m/1")  # type: ignore[arg-type,return-value]
    assert timed.abandoned_running() == 1
    with pytest.raises(LoadTimedOut, match="1 earlier load"):
        timed.run(lambda: ConstantServable(2), "m/2")
    gate.set()
    eventually(lambda: timed.abandoned_running() == 0, message="the abandoned load to end")
    assert timed.run(lambda: ConstantServable(3), "m/3").version == 3

    def broken() -> ConstantServable:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        timed.run(broken, "m/4")
