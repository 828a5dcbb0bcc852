"""`eventually`: the one way tests wait for something to become true.

A test that waits polls a predicate until it holds or a deadline passes, then fails saying
what it awaited and the last value it saw (a bare "timed out" sends the next engineer to
re-run the test under a debugger). Every deadline loop in tests/ and bench/ goes through
here, so the interval, the deadline and the failure message are chosen in one place.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

Message = str | Callable[[], str]


def _failure(message: Message, timeout: float, last: object) -> AssertionError:
    what = message() if callable(message) else message
    return AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def eventually(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: Message = "the condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """The predicate's first truthy value, polled every `interval` s for `timeout` s.

    `message` (or a function making it, for context read only on failure, such as a log's
    tail) names what was awaited. `ignore`: exceptions the predicate may raise while the
    awaited state is not there yet (a server not listening); they count as a falsy try.
    The predicate is tried once more at the deadline, so a slow poll cannot lose the race.
    """
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, last)
        time.sleep(interval)


async def eventually_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.001,
    message: Message = "the condition",
) -> T:
    """`eventually` inside an event loop: sleeps with asyncio.sleep, so the tasks under
    test run between tries; `predicate` may be a plain function or a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        value = cast(T, await result if inspect.isawaitable(result) else result)
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(message, timeout, value)
        await asyncio.sleep(interval)
