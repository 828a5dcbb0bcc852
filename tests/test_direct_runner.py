"""The unbatched runner: one model call per request, off the event loop, holding its version."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.runner import DirectRunner
from pyserving.engine.servable_map import ServableHandle
from tests.servables import SIG, WAIT_S, RecordingServable


def test_runs_the_model_and_returns_its_outputs() -> None:
    runner = DirectRunner(2)
    handle = ServableHandle("m", 1, RecordingServable())
    x = np.ones((3, 2), np.float32)
    outputs = asyncio.run(runner.run(handle, SIG, {"x": x}, ()))
    np.testing.assert_array_equal(outputs["y"], x * 2)
    assert handle.in_flight == 0
    runner.close()


def test_a_passed_deadline_is_refused_before_the_model_runs() -> None:
    runner = DirectRunner(1)
    servable = RecordingServable()
    handle = ServableHandle("m", 1, servable)
    with pytest.raises(ServingError) as info:
        asyncio.run(runner.run(handle, SIG, {"x": np.ones((1, 2), np.float32)}, (), deadline=0.0))
    assert info.value.code == Code.DEADLINE_EXCEEDED and servable.batches == []
    runner.close()


def test_a_cancelled_request_keeps_its_version_until_the_model_call_ends() -> None:
    runner = DirectRunner(1)
    servable = RecordingServable()
    servable.gate.clear()  # the model call blocks until the test opens the gate
    handle = ServableHandle("m", 1, servable)

    async def cancel_mid_call() -> None:
        task = asyncio.create_task(runner.run(handle, SIG, {"x": np.ones((1, 2), np.float32)}, ()))
        assert await asyncio.to_thread(servable.running.wait, WAIT_S)
        task.cancel()  # a client deadline or disconnect
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_call())
    assert handle.in_flight == 1  # the model is still running on this version
    assert not handle.retire_and_wait(timeout=0.05)  # so an unload must wait for it
    servable.gate.set()
    deadline = time.monotonic() + WAIT_S
    while handle.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.in_flight == 0
    runner.close()
