"""The front-end's and the engine's sides of the request counts (`--workers`): a front-end's
request-log records written and dropped, counted on its writer thread, reach the engine's
counters with its request observations."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pyserving.adapters.ipc.engine_services import engine_services
from pyserving.adapters.ipc.engine_side import Answer, Call
from pyserving.adapters.ipc.frontend_services import ObservationShipper
from pyserving.engine.errors import ServingError
from tests.util.waiting import eventually_async


class Recorder:
    """An EngineClient stand-in: the params of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any], **kwargs: Any) -> Answer:
        self.calls.append((method, params))
        return Answer({})


def services(counted: list[str]) -> dict:
    async def exposition() -> bytes:
        return b""

    return engine_services(
        lambda model, api, code, seconds: counted.append(f"{model}/{api}/{code}"),
        exposition,
        lambda: [],
        lambda: 0,
        lambda worker, pid: None,
        lambda: counted.append("written"),
        lambda reason: counted.append(f"dropped:{reason}"),
    )


def test_request_log_counts_from_the_writer_thread_reach_the_engines_counters() -> None:
    client = Recorder()
    counted: list[str] = []

    async def run() -> None:
        # ignored below: a recording stand-in for EngineClient
        shipper = ObservationShipper(client, interval_s=0.01)  # type: ignore[arg-type]
        writer = threading.Thread(
            target=lambda: [
                shipper.request_log_written(),
                shipper.request_log_written(),
                shipper.request_log_drop("write_error"),
            ]
        )
        writer.start()
        writer.join()
        shipper.add("m", "Predict", "OK", 0.01)
        # Shipped by the timer the writer thread armed.
        await eventually_async(lambda: client.calls, 5, 0.01, "the shipped batch")
        await shipper.flush()
        observe = services(counted)["observe"]
        for method, params in client.calls:
            assert method == "observe"
            await observe(Call(method, params, {}, None))

    asyncio.run(run())
    assert sorted(counted) == ["dropped:write_error", "m/Predict/OK", "written", "written"]


def test_overlapping_sends_and_a_scrapes_flush_all_finish() -> None:
    """A batch sent while the one before is still on its way (a busy engine): neither
    waits for the other, and a scrape's flush returns once both are answered."""
    released = asyncio.Event()

    class Slow(Recorder):
        async def call(self, method: str, params: dict[str, Any], **kwargs: Any) -> Answer:
            self.calls.append((method, params))
            await released.wait()
            return Answer({})

    client = Slow()

    async def run() -> None:
        # ignored below: a recording stand-in for EngineClient
        shipper = ObservationShipper(client, interval_s=0.001)  # type: ignore[arg-type]
        for n in (1, 2):
            shipper.add("m", "Predict", "OK", 0.01)
            # Each batch on its way, unanswered.
            await eventually_async(lambda n=n: len(client.calls) >= n, 5, message=f"batch {n} sent")
        released.set()
        async with asyncio.timeout(5):
            await shipper.flush()

    asyncio.run(run())
    assert len(client.calls) == 2


def test_an_unknown_count_is_a_front_ends_bug_not_a_crash() -> None:
    observe = services([])["observe"]
    call = Call("observe", {"observations": [], "request_log": {"nonsense": 1}}, {}, None)
    with pytest.raises(ServingError, match="unknown request log count"):
        asyncio.run(observe(call))
