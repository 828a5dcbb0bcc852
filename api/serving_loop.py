"""The event loop the server runs on (`--event_loop`): uvloop's or the standard library's.

uvloop (libuv's loop, in C) makes every future, task, callback and wake-up of the request
path cheaper: `python -m bench.request_cost --uvloop` measured a gRPC Predict at 128-161
against 210-217 CPU µs on asyncio's loop in-process. grpc.aio and aiohttp run on any
asyncio loop. The benchmark's floors use this too, so they run on the same loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOPS = ("uvloop", "asyncio")


def run_on_loop(coroutine: Coroutine[Any, Any, T], event_loop: str) -> T:
    """`asyncio.run(coroutine)` on the loop `event_loop` names (one of EVENT_LOOPS)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine)
