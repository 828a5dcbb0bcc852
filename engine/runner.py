"""How a validated request reaches a servable's `run`: never on the event loop.

`DirectRunner` gives each request its own model call on a pool of request threads
(TensorFlow releases the GIL inside ops). The batching scheduler offers the same
`run` coroutine and merges concurrent requests instead.

`deadline` is the request's absolute `time.monotonic()` deadline (None: none). A request
whose deadline has passed before its model call starts gets DEADLINE_EXCEEDED instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable_map import ServableHandle

DEADLINE_MESSAGE = "the request's deadline passed before its model run started"


class Runner(Protocol):
    async def run(
        self,
        handle: ServableHandle,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class DirectRunner:
    def __init__(self, num_threads: int) -> None:
        self._pool = ThreadPoolExecutor(max(1, num_threads), thread_name_prefix="request")

    async def run(
        self,
        handle: ServableHandle,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        # The model call holds the version itself: a request cancelled while it runs (client
        # deadline, disconnect) must not let the version unload under the running call, and
        # one cancelled before its call started must still give the version back.
        handle.retain()
        try:
            future = self._pool.submit(
                _run_before_deadline, handle, signature, inputs, output_filter, deadline
            )
        except BaseException:
            handle.release()
            raise
        future.add_done_callback(lambda _: handle.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _run_before_deadline(
    handle: ServableHandle,
    signature: str,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str],
    deadline: float | None,
) -> dict[str, np.ndarray]:
    if deadline is not None and time.monotonic() >= deadline:
        raise ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
    return handle.servable.run(signature, inputs, output_filter)
