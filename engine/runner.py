"""How a validated request reaches a servable's `run`.

`DirectRunner` gives each request its own model call on a pool of request threads
(TensorFlow releases the GIL inside ops). The batching scheduler offers the same
`run` coroutine and merges concurrent requests instead (one hop per batch).

The hop to a request thread and back costs ~70 us of the loop's time on one CPU
(measured: `submit` + wake-up + `call_soon_threadsafe`), more than a small model's
whole call (the example's Session call: 7 us alone; ~73 us inside a busy server, whose
other work keeps evicting TensorFlow from the caches: `bench.model_call`'s session_cold);
h2load at c=64 gave 1,329 req/s with the hop and 1,666 without (and 1,841/1,761 against
1,972/1,943 on a faster CPU, where the call was the ~73 us one). So a (version,
signature) whose fastest call, *measured on the request threads*, stay under
`INLINE_BELOW_S` runs on the loop, for inputs no bigger than the measured ones. A slow
model never gets there, and an inline call that takes longer than `STALL_LIMIT_S` (and
was not just preempted: `is_stall`) sends that signature back to the threads for
`RETRY_AFTER_CALLS` calls, measured afresh there: the loop is held by at most one such
call per that many.

`deadline` is the request's absolute `time.monotonic()` deadline (None: none). A request
whose deadline has passed before its model call starts gets DEADLINE_EXCEEDED instead.
"""

from __future__ import annotations

import asyncio
import resource
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

import numpy as np

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable_map import ServableHandle

DEADLINE_MESSAGE = "the request's deadline passed before its model run started"


class ModelCall(NamedTuple):
    """One call of a signature: what every runner is handed with the version it runs on."""

    signature: str
    inputs: Mapping[str, np.ndarray]
    output_filter: tuple[str, ...]


INLINE_BELOW_S = 100e-6  # calls cheaper than the hop to a request thread run on the loop
STALL_LIMIT_S = 2e-3  # an inline call this slow sends its signature back to the threads
MEASURED_CALLS = 16  # calls timed on the request threads before one may run inline
RETRY_AFTER_CALLS = 1024  # after an inline stall, calls on the threads before another try


class CallCost:
    """What one (version, signature)'s model calls cost; decides whether the next is inline."""

    __slots__ = ("best_s", "calls", "max_bytes", "measured", "threads_until")

    def __init__(self) -> None:
        self.calls = 0
        self.measured = 0  # calls timed on the request threads since the last stall
        self.best_s = float("inf")
        self.max_bytes = 0
        self.threads_until = 0  # after a stall: on the threads until this many calls

    def inline(self, nbytes: int) -> bool:
        return (
            self.measured >= MEASURED_CALLS
            and self.best_s < INLINE_BELOW_S
            and nbytes <= self.max_bytes
            and self.calls >= self.threads_until
        )

    def record(self, seconds: float, nbytes: int, inline: bool) -> None:
        # The fastest call measured on a thread, not the mean: under load a thread's wall
        # time is mostly waiting for the GIL the loop holds, so a 20 us model measured
        # ~300 us there on average and never came inline, just when the hop costs most.
        self.calls += 1
        if not inline:
            self.measured += 1
            self.best_s = min(self.best_s, seconds)
            self.max_bytes = max(self.max_bytes, nbytes)
        elif seconds > STALL_LIMIT_S:
            # Back to the threads, and measured afresh there before the next inline call:
            # a model that turned slow stays there; a stall that was the CPU taken away
            # (one pinned, shared CPU preempts for milliseconds) costs one such call per
            # RETRY_AFTER_CALLS, not inline calls for good (it did: banned after ~100).
            self.threads_until = self.calls + RETRY_AFTER_CALLS
            self.measured = 0
            self.best_s = float("inf")


def is_stall(elapsed_s: float, cpu_s: float, involuntary_switches: int) -> bool:
    """Whether an inline call that took `elapsed_s` held the loop because of the model.

    On a shared CPU the scheduler takes it away for milliseconds (involuntary context
    switches): such a call is slow through no fault of the model, and counting it sent the
    signature to the threads every second or so under load. A call is the model's stall
    when the loop thread was not preempted (it ran, or waited on the model's own work or
    sleep), or when its own CPU time alone passes the limit."""
    if elapsed_s <= STALL_LIMIT_S:
        return False
    return involuntary_switches == 0 or cpu_s > STALL_LIMIT_S


def _input_bytes(inputs: Mapping[str, np.ndarray]) -> int:
    """Bytes of numeric inputs; -1 (never inline) with strings, whose cost their size hides."""
    total = 0
    for array in inputs.values():
        if array.dtype.kind in "OSU":
            return -1
        total += array.nbytes
    return total


class Runner(Protocol):
    """Runs one model call of a held version, before `deadline` (absolute, monotonic)."""

    async def run(
        self, handle: ServableHandle, call: ModelCall, deadline: float | None = None
    ) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class DirectRunner:
    def __init__(self, num_threads: int) -> None:
        self._pool = ThreadPoolExecutor(max(1, num_threads), thread_name_prefix="request")
        self._costs: weakref.WeakKeyDictionary[ServableHandle, dict[str, CallCost]] = (
            weakref.WeakKeyDictionary()
        )

    def cost(self, handle: ServableHandle, signature: str) -> CallCost:
        by_signature = self._costs.get(handle)
        if by_signature is None:
            by_signature = self._costs[handle] = {}
        cost = by_signature.get(signature)
        if cost is None:
            cost = by_signature[signature] = CallCost()
        return cost

    async def run(
        self, handle: ServableHandle, call: ModelCall, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        # The model call holds the version itself: a request cancelled while it runs (client
        # deadline, disconnect) must not let the version unload under the running call, and
        # one cancelled before its call started must still give the version back.
        cost = self.cost(handle, call.signature)
        nbytes = _input_bytes(call.inputs)
        if nbytes >= 0 and cost.inline(nbytes):
            before = resource.getrusage(resource.RUSAGE_THREAD)  # one syscall, ~0.5 us
            started = time.perf_counter()
            try:
                return _run_before_deadline(handle, call, deadline)
            finally:
                elapsed = time.perf_counter() - started
                if elapsed > STALL_LIMIT_S:
                    after = resource.getrusage(resource.RUSAGE_THREAD)
                    if not is_stall(
                        elapsed,
                        after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                        after.ru_nivcsw - before.ru_nivcsw,
                    ):
                        elapsed = 0.0  # the CPU was taken away; the model did not stall
                cost.record(elapsed, nbytes, inline=True)
        handle.retain()
        try:
            future = self._pool.submit(_run_timed, cost, nbytes, handle, call, deadline)
        except BaseException:
            handle.release()
            raise
        future.add_done_callback(lambda _: handle.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _run_timed(
    cost: CallCost, nbytes: int, handle: ServableHandle, call: ModelCall, deadline: float | None
) -> dict[str, np.ndarray]:
    started = time.perf_counter()
    outputs = _run_before_deadline(handle, call, deadline)
    cost.record(time.perf_counter() - started, nbytes, inline=False)
    return outputs


def _run_before_deadline(
    handle: ServableHandle, call: ModelCall, deadline: float | None
) -> dict[str, np.ndarray]:
    if deadline is not None and time.monotonic() >= deadline:
        raise ServingError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
    return handle.servable.run(call.signature, call.inputs, call.output_filter)
