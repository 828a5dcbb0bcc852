"""The batching scheduler against a small real servable: merging, flushing, padding,
rejections, deadlines, failure isolation and draining on unload.

The servable can be held at a gate, so a test fills the only batch thread with one
request and knows exactly what is queued behind it; no test depends on timing beyond
generous upper bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from pyserving.engine.batching import BatchingRunner
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.events import BatchRun, Event
from pyserving.engine.runner import ModelCall
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.servables import SIG, WAIT_S, RecordingServable
from tests.util.waiting import eventually_async


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    def __init__(
        self,
        servable: RecordingServable | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        options.setdefault("num_batch_threads", 1)
        self.servable = servable or RecordingServable()
        self.handle = ServableHandle("m", 1, self.servable)
        self.events: list[Event] = []
        self.rejects: list[tuple[str, str, str]] = []
        self.runner = BatchingRunner(
            BatchingOptions(**options),
            publish=self.events.append,
            on_reject=lambda *r: self.rejects.append(r),
            clock=clock,
        )

    async def predict(self, x: np.ndarray, **kw: Any) -> np.ndarray:
        out = await self.runner.run(
            self.handle, ModelCall(SIG, {"x": np.asarray(x, np.float32)}, ()), **kw
        )
        return out["y"]

    async def hold_thread(self) -> asyncio.Task[np.ndarray]:
        """Occupy the (only) batch thread with one request held at the gate."""
        self.servable.gate.clear()
        self.servable.running.clear()
        task = asyncio.create_task(self.predict(rows(1, start=1000)))
        assert await asyncio.to_thread(self.servable.running.wait, WAIT_S)
        return task

    async def wait_queued(self, count: int) -> None:
        await eventually_async(
            lambda: sum(self.runner.queue_depths().values()) >= count,
            WAIT_S,
            message=lambda: f"{count} queued: {self.runner.queue_depths()}",
        )

    def batch_runs(self) -> list[BatchRun]:
        return [e for e in self.events if isinstance(e, BatchRun)]

    def close(self) -> None:
        self.servable.gate.set()
        self.runner.close()
        assert self.handle.in_flight == 0, "a queued request leaked its hold on the version"


def rows(n: int, start: int = 0, width: int = 2) -> np.ndarray:
    """`n` distinct rows, so every request's answer can be told apart from the others'."""
    return np.arange(start * width, (start + n) * width, dtype=np.float32).reshape(n, width)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), WAIT_S * 3))


async def outcome(awaitable: Awaitable[np.ndarray]) -> np.ndarray | ServingError:
    try:
        return await awaitable
    except ServingError as exc:
        return exc


# ---------------------------------------------------------------- merging


def test_concurrent_requests_merge_into_one_run_and_each_gets_its_own_rows() -> None:
    h = Harness()

    async def scenario() -> None:
        blocker = await h.hold_thread()
        inputs = [rows(1 + i % 3, start=10 * i) for i in range(8)]
        tasks = [asyncio.create_task(h.predict(x)) for x in inputs]
        await h.wait_queued(8)
        h.servable.gate.set()
        results = await asyncio.gather(*tasks)
        await blocker
        for x, y in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(y, x * 2)
        # The held request ran alone; the eight queued behind it ran as one batch, in order.
        assert h.servable.sizes == [1, sum(len(x) for x in inputs)]
        np.testing.assert_array_equal(h.servable.batches[1], np.concatenate(inputs))

    run(scenario)
    runs = h.batch_runs()
    assert [(r.size, r.padded_size) for r in runs] == [(1, 1), (15, 15)]  # 1+2+3+1+2+3+1+2
    assert all(r.model == "m" and r.version == 1 and r.signature == SIG for r in runs)
    h.close()


def test_one_batch_run_event_per_batch_never_per_request() -> None:
    h = Harness(max_batch_size=4, batch_timeout_micros=60_000_000)

    async def scenario() -> None:
        await asyncio.gather(*(h.predict(rows(1, start=i)) for i in range(8)))

    run(scenario)
    assert h.servable.sizes == [4, 4]
    assert len(h.batch_runs()) == 2
    h.close()


# ---------------------------------------------------------------- when a batch runs


def test_full_batch_runs_at_once_without_waiting_for_the_timeout() -> None:
    h = Harness(max_batch_size=4, batch_timeout_micros=60_000_000)

    async def scenario() -> None:
        started = time.monotonic()
        await asyncio.gather(*(h.predict(rows(1, start=i)) for i in range(4)))
        assert time.monotonic() - started < WAIT_S  # far less than the 60 s timeout

    run(scenario)
    assert h.servable.sizes == [4]
    h.close()


def test_partial_batch_runs_when_its_oldest_request_has_waited_the_timeout() -> None:
    h = Harness(max_batch_size=100, batch_timeout_micros=200_000)

    async def scenario() -> None:
        started = time.monotonic()
        results = await asyncio.gather(*(h.predict(rows(1, start=i)) for i in range(3)))
        assert 0.2 <= time.monotonic() - started < WAIT_S
        for i, y in enumerate(results):
            np.testing.assert_array_equal(y, rows(1, start=i) * 2)

    run(scenario)
    assert h.servable.sizes == [3]
    assert h.batch_runs()[0].oldest_wait_s >= 0.2
    h.close()


def test_with_idle_micros_a_burst_runs_once_nothing_joins_it() -> None:
    h = Harness(max_batch_size=100, batch_timeout_micros=60_000_000, idle_micros=50_000)

    async def scenario() -> None:
        started = time.monotonic()
        await asyncio.gather(*(h.predict(rows(1, start=i)) for i in range(3)))
        assert time.monotonic() - started < WAIT_S  # far less than the 60 s timeout

    run(scenario)
    assert h.servable.sizes == [3]  # one batch: the three joined within the idle time
    h.close()


def test_close_runs_what_is_queued_then_refuses_new_requests() -> None:
    h = Harness(max_batch_size=100, batch_timeout_micros=60_000_000)

    async def scenario() -> None:
        tasks = [asyncio.create_task(h.predict(rows(1, start=i))) for i in range(3)]
        await h.wait_queued(3)
        await asyncio.to_thread(h.runner.close)
        results = await asyncio.gather(*tasks)
        assert len(results) == 3
        with pytest.raises(ServingError) as refused:
            await h.predict(rows(1))
        assert refused.value.code is Code.UNAVAILABLE

    run(scenario)
    assert h.servable.sizes == [3]
    h.close()


# ---------------------------------------------------------------- padding


def test_batch_is_padded_to_the_next_allowed_size_and_the_padding_cut_off() -> None:
    h = Harness(max_batch_size=8, allowed_batch_sizes=(4, 8), batch_timeout_micros=200_000)

    async def scenario() -> None:
        inputs = [rows(1, start=5), rows(2, start=7)]
        results = await asyncio.gather(*(h.predict(x) for x in inputs))
        for x, y in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(y, x * 2)

    run(scenario)
    assert h.servable.sizes == [4]  # 3 rows padded up to 4
    np.testing.assert_array_equal(h.servable.batches[0][3], rows(1, start=5)[0])  # copy of row 0
    assert [(r.size, r.padded_size) for r in h.batch_runs()] == [(3, 4)]
    h.close()


def test_variable_inner_shapes_are_padded_when_asked() -> None:
    h = Harness(
        RecordingServable(inner=(None,)),
        pad_variable_length_inputs=True,
        batch_timeout_micros=200_000,
    )

    async def scenario() -> None:
        short, long = np.full((1, 2), 3.0), np.arange(4.0).reshape(1, 4) + 1
        y_short, y_long = await asyncio.gather(h.predict(short), h.predict(long))
        np.testing.assert_array_equal(y_short, [[6.0, 6.0, 6.0, 6.0]])  # padded with its 1st value
        np.testing.assert_array_equal(y_long, long * 2)

    run(scenario)
    assert [b.shape for b in h.servable.batches] == [(2, 4)]
    h.close()


def test_variable_inner_shapes_without_padding_fail_with_failed_precondition() -> None:
    h = Harness(RecordingServable(inner=(None,)), batch_timeout_micros=200_000)

    async def scenario() -> None:
        first, odd = np.ones((1, 2)), np.ones((1, 4))
        y_first, y_odd = await asyncio.gather(outcome(h.predict(first)), outcome(h.predict(odd)))
        np.testing.assert_array_equal(y_first, first * 2)
        assert isinstance(y_odd, ServingError)
        assert y_odd.code is Code.FAILED_PRECONDITION
        assert "pad_variable_length_inputs" in y_odd.message

    run(scenario)
    assert [b.shape for b in h.servable.batches] == [(1, 2)]
    assert ("m", SIG, "shape_mismatch") in h.rejects
    h.close()


# ---------------------------------------------------------------- rejections


def test_request_larger_than_max_batch_size_is_invalid_argument() -> None:
    h = Harness(max_batch_size=4)

    async def scenario() -> None:
        with pytest.raises(ServingError) as too_big:
            await h.predict(rows(5))
        assert too_big.value.code is Code.INVALID_ARGUMENT
        assert "larger than maximum input batch size 4" in too_big.value.message

    run(scenario)
    assert h.servable.batches == []
    assert h.rejects == [("m", SIG, "too_large")]
    h.close()


def test_inputs_with_different_batch_sizes_are_invalid_argument() -> None:
    h = Harness()

    async def scenario() -> None:
        with pytest.raises(ServingError) as mixed:
            await h.runner.run(
                h.handle, ModelCall(SIG, {"a": np.ones((2, 1)), "b": np.ones((3, 1))}, ())
            )
        assert mixed.value.code is Code.INVALID_ARGUMENT
        with pytest.raises(ServingError) as scalar:
            await h.runner.run(h.handle, ModelCall(SIG, {"a": np.float32(1)}, ()))
        assert scalar.value.code is Code.INVALID_ARGUMENT

    run(scenario)
    h.close()


def splitting_harness() -> Harness:
    """Batches of up to 10 rows, run in pieces of at most 4."""
    return Harness(
        max_batch_size=10,
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
        batch_timeout_micros=200_000,
    )


def test_large_request_is_split_across_batches_when_splitting_is_on() -> None:
    h = splitting_harness()

    async def scenario() -> None:
        small, big = rows(1, start=100), rows(9, start=0)
        y_small, y_big = await asyncio.gather(h.predict(small), h.predict(big))
        np.testing.assert_array_equal(y_small, small * 2)
        np.testing.assert_array_equal(y_big, big * 2)  # pieces put back together in order

    run(scenario)
    assert h.servable.sizes == [4, 4, 2]  # 1 + 3 of the big one, then 4, then the last 2
    h.close()


def test_large_request_alone_is_split_too() -> None:
    h = splitting_harness()

    async def scenario() -> None:
        np.testing.assert_array_equal(await h.predict(rows(9)), rows(9) * 2)

    run(scenario)
    assert h.servable.sizes == [4, 4, 1]
    h.close()


def test_full_queue_is_unavailable_at_once_and_the_queued_requests_still_finish() -> None:
    h = Harness(max_batch_size=1, max_enqueued_batches=2)

    async def scenario() -> None:
        blocker = await h.hold_thread()
        queued = [asyncio.create_task(h.predict(rows(1, start=i))) for i in range(2)]
        await h.wait_queued(2)
        started = time.monotonic()
        with pytest.raises(ServingError) as full:
            await h.predict(rows(1, start=9))
        assert time.monotonic() - started < WAIT_S  # refused, not parked
        assert full.value.code is Code.UNAVAILABLE
        assert "queue" in full.value.message and "full" in full.value.message
        h.servable.gate.set()
        for i, y in enumerate(await asyncio.gather(*queued)):
            np.testing.assert_array_equal(y, rows(1, start=i) * 2)
        await blocker

    run(scenario)
    assert h.rejects == [("m", SIG, "queue_full")]
    h.close()


# ---------------------------------------------------------------- deadlines


def test_request_whose_deadline_passes_while_queued_is_dropped_from_its_batch() -> None:
    clock = FakeClock()
    h = Harness(clock=clock)

    async def scenario() -> None:
        blocker = await h.hold_thread()
        late = asyncio.create_task(outcome(h.predict(rows(1, start=50), deadline=clock() + 0.05)))
        timely = asyncio.create_task(h.predict(rows(1, start=60)))
        await h.wait_queued(2)
        clock.advance(0.1)  # the first deadline passes while both wait
        h.servable.gate.set()
        expired = await late
        assert isinstance(expired, ServingError)
        assert expired.code is Code.DEADLINE_EXCEEDED
        np.testing.assert_array_equal(await timely, rows(1, start=60) * 2)
        await blocker

    run(scenario)
    assert h.servable.sizes == [1, 1]
    assert not any((b == rows(1, start=50)).all(axis=1).any() for b in h.servable.batches)
    assert ("m", SIG, "deadline_exceeded") in h.rejects
    h.close()


def test_cancelled_caller_is_skipped_and_its_hold_released() -> None:
    h = Harness()

    async def scenario() -> None:
        blocker = await h.hold_thread()
        gone = asyncio.create_task(h.predict(rows(1, start=70)))
        await h.wait_queued(1)
        gone.cancel()
        h.servable.gate.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await gone

    run(scenario)
    h.runner.close()
    assert h.servable.sizes == [1]
    h.close()


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("poison", "code"), [(-1.0, Code.INVALID_ARGUMENT), (np.nan, Code.INTERNAL)]
)
def test_failing_batch_fails_exactly_its_requests_and_the_queue_keeps_working(
    poison: float, code: Code
) -> None:
    h = Harness()

    async def scenario() -> None:
        blocker = await h.hold_thread()
        bad = np.array([[poison, 1.0]], np.float32)
        batch = [asyncio.create_task(outcome(h.predict(x))) for x in (rows(1), bad, rows(1, 3))]
        await h.wait_queued(3)
        h.servable.gate.set()
        np.testing.assert_array_equal(await blocker, rows(1, start=1000) * 2)  # not in it
        errors = await asyncio.gather(*batch)
        assert all(isinstance(e, ServingError) for e in errors)
        assert {(e.code, e.message) for e in errors} == {(errors[0].code, errors[0].message)}
        assert errors[0].code is code
        np.testing.assert_array_equal(await h.predict(rows(2, 8)), rows(2, 8) * 2)  # still works

    run(scenario)
    assert h.servable.sizes == [1, 3, 2]
    h.close()


# ---------------------------------------------------------------- unload drains the queue


class RecordingLoader:
    platform = "recording"

    def __init__(self) -> None:
        self.servables: dict[int, RecordingServable] = {}

    def load(self, path: str) -> RecordingServable:
        servable = RecordingServable()
        self.servables[int(path.rsplit("/", 1)[-1])] = servable
        return servable


def test_unloading_version_finishes_its_queued_requests_before_it_unloads() -> None:
    from tests.util.lifecycle import Lifecycle as ManagerHarness

    loader = RecordingLoader()
    m = ManagerHarness(loader)
    m.aspire(1)
    v1 = loader.servables[1]
    runner = BatchingRunner(
        BatchingOptions(num_batch_threads=1, max_batch_size=4, batch_timeout_micros=60_000_000)
    )
    serving_map: ServableMap = m.map

    async def predict(x: np.ndarray) -> tuple[int, np.ndarray]:
        # As the Predict handler does: hold the version while the request runs.
        with serving_map.acquire("m") as handle:
            out = await runner.run(handle, ModelCall(SIG, {"x": x}, ()))
            return handle.version, out["y"]

    async def scenario() -> None:
        v1.gate.clear()
        first = asyncio.create_task(predict(rows(4, 0)))  # a full batch: runs at once
        assert await asyncio.to_thread(v1.running.wait, WAIT_S)
        queued = [asyncio.create_task(predict(rows(1, i))) for i in (4, 5)]
        await eventually_async(
            lambda: sum(runner.queue_depths().values()) >= 2, WAIT_S, message="2 queued"
        )
        assert runner.queue_depths() == {("m", 1, SIG): 2}
        # Version 2 replaces version 1, whose unload must wait for the three requests.
        v1_handle = serving_map.snapshot["m"].versions[1]
        swap = asyncio.create_task(asyncio.to_thread(m.aspire, 2))
        # The unload has begun and waits for in-flight requests.
        await eventually_async(lambda: v1_handle.retiring, WAIT_S, 0.005, "the unload to begin")
        # Held by the three requests in flight, the unload cannot have run.
        assert v1_handle.in_flight >= 3 and not v1_handle.retire_and_wait(timeout=0)
        assert not v1.unloaded
        v1.gate.set()
        answers = await asyncio.gather(first, *queued)
        await swap
        assert [version for version, _ in answers] == [1, 1, 1]
        for x, (_, y) in zip((rows(4, 0), rows(1, 4), rows(1, 5)), answers, strict=True):
            np.testing.assert_array_equal(y, x * 2)
        assert v1.unloaded
        # The 60 s timeout did not hold the drain up: a retiring version's batch runs now.
        assert v1.sizes == [4, 2]

    try:
        run(scenario)
    finally:
        runner.close()
        m.close()
