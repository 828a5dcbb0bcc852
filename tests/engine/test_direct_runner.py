"""The unbatched runner: one model call per request, holding its version; on a request
thread unless its calls are measured cheaper than the hop there."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.runner import (
    INLINE_BELOW_S,
    MEASURED_CALLS,
    RETRY_AFTER_CALLS,
    STALL_LIMIT_S,
    DirectRunner,
    ModelCall,
    is_stall,
)
from pyserving.engine.servable_map import ServableHandle
from tests.servables import SIG, WAIT_S, RecordingServable
from tests.util.waiting import eventually


def test_runs_the_model_and_returns_its_outputs() -> None:
    runner = DirectRunner(2)
    handle = ServableHandle("m", 1, RecordingServable())
    x = np.ones((3, 2), np.float32)
    outputs = asyncio.run(runner.run(handle, ModelCall(SIG, {"x": x}, ())))
    np.testing.assert_array_equal(outputs["y"], x * 2)
    assert handle.in_flight == 0
    runner.close()


def test_a_passed_deadline_is_refused_before_the_model_runs() -> None:
    runner = DirectRunner(1)
    servable = RecordingServable()
    handle = ServableHandle("m", 1, servable)
    with pytest.raises(ServingError) as info:
        asyncio.run(
            runner.run(handle, ModelCall(SIG, {"x": np.ones((1, 2), np.float32)}, ()), deadline=0.0)
        )
    assert info.value.code == Code.DEADLINE_EXCEEDED and servable.batches == []
    runner.close()


def test_a_cancelled_request_keeps_its_version_until_the_model_call_ends() -> None:
    runner = DirectRunner(1)
    servable = RecordingServable()
    servable.gate.clear()  # the model call blocks until the test opens the gate
    handle = ServableHandle("m", 1, servable)

    async def cancel_mid_call() -> None:
        task = asyncio.create_task(
            runner.run(handle, ModelCall(SIG, {"x": np.ones((1, 2), np.float32)}, ()))
        )
        assert await asyncio.to_thread(servable.running.wait, WAIT_S)
        task.cancel()  # a client deadline or disconnect
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_call())
    assert handle.in_flight == 1  # the model is still running on this version
    assert not handle.retire_and_wait(timeout=0.05)  # so an unload must wait for it
    servable.gate.set()
    eventually(lambda: handle.in_flight == 0, WAIT_S, message="the cancelled call to end")
    runner.close()


class ThreadNoting:
    """y = x; notes the thread of each call, and sleeps `delay_s` inside it."""

    signatures: dict = {}

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.delay_s = 0.0

    def run(self, signature, inputs, output_filter):
        self.threads.append(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"y": inputs["x"]}


def calls(runner: DirectRunner, handle: ServableHandle, n: int, rows: int = 1) -> None:
    async def run_all() -> None:
        for _ in range(n):
            await runner.run(handle, ModelCall(SIG, {"x": np.ones((rows, 2), np.float32)}, ()))

    asyncio.run(run_all())


def test_cheap_calls_measured_on_the_threads_then_run_on_the_loop() -> None:
    runner = DirectRunner(2)
    servable = ThreadNoting()
    handle = ServableHandle("m", 1, servable)
    calls(runner, handle, MEASURED_CALLS + 5)
    on_loop = [name == threading.main_thread().name for name in servable.threads]
    assert on_loop == [False] * MEASURED_CALLS + [True] * 5
    servable.threads.clear()
    calls(runner, handle, 1, rows=50)  # bigger than any measured call: back to a thread
    assert servable.threads != [threading.main_thread().name]
    runner.close()


def test_a_slow_model_never_runs_on_the_loop() -> None:
    runner = DirectRunner(2)
    servable = ThreadNoting()
    servable.delay_s = 2 * INLINE_BELOW_S
    calls(runner, ServableHandle("m", 1, servable), MEASURED_CALLS + 5)
    assert threading.main_thread().name not in servable.threads
    runner.close()


def stalled_once() -> tuple[DirectRunner, ThreadNoting, ServableHandle]:
    """A signature running inline, then one inline call that holds the loop (a sleep)."""
    runner = DirectRunner(2)
    servable = ThreadNoting()
    handle = ServableHandle("m", 1, servable)
    calls(runner, handle, MEASURED_CALLS + 1)
    assert servable.threads[-1] == threading.main_thread().name
    servable.delay_s = 2 * STALL_LIMIT_S  # the model turns slow: one call holds the loop
    calls(runner, handle, 1)
    servable.delay_s = 0.0
    servable.threads.clear()
    return runner, servable, handle


def test_one_inline_call_that_stalls_sends_the_signature_back_to_the_threads() -> None:
    runner, servable, handle = stalled_once()
    calls(runner, handle, MEASURED_CALLS + 5)  # none after it runs inline
    assert threading.main_thread().name not in servable.threads
    runner.close()


def test_the_fastest_call_on_the_threads_decides_not_the_mean() -> None:
    # Under load a request thread waits for the GIL the loop holds: most of a cheap model's
    # calls measure slow there, its fastest one still shows what the call costs.
    runner = DirectRunner(2)
    servable = ThreadNoting()
    handle = ServableHandle("m", 1, servable)
    servable.delay_s = 3 * INLINE_BELOW_S
    calls(runner, handle, MEASURED_CALLS - 1)
    servable.delay_s = 0.0
    calls(runner, handle, 1)  # one uncontended call: the fastest measured
    servable.delay_s = 3 * INLINE_BELOW_S
    assert runner.cost(handle, SIG).inline(8)
    servable.threads.clear()
    calls(runner, handle, 1)
    assert servable.threads == [threading.main_thread().name]
    runner.close()


def test_after_a_stall_the_signature_is_measured_again_before_its_next_inline_call() -> None:
    runner, servable, handle = stalled_once()
    calls(runner, handle, RETRY_AFTER_CALLS + 3)
    on_loop = [name == threading.main_thread().name for name in servable.threads]
    assert on_loop == [False] * RETRY_AFTER_CALLS + [True] * 3
    runner.close()


def test_a_slow_inline_call_is_a_stall_unless_the_cpu_was_taken_away() -> None:
    slow = 2 * STALL_LIMIT_S
    assert not is_stall(STALL_LIMIT_S / 2, 0.0, 0)  # fast enough
    assert is_stall(slow, 0.0, 0)  # not preempted: waited on the model (its pool, a sleep)
    assert is_stall(slow, slow, 0)  # computed on the loop thread itself
    assert not is_stall(slow, 50e-6, 3)  # preempted, the call itself was cheap
    assert is_stall(slow, slow, 3)  # preempted, and its own CPU time is over the limit
