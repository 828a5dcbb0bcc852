"""tests/util/waiting.py: `eventually` returns the first truthy value, and its failure
says what it awaited and what it last saw (the message is what a failing suite shows)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.util.waiting import eventually, eventually_async


def test_returns_the_first_truthy_value() -> None:
    tries = itertools.count()
    assert eventually(lambda: [n for n in [next(tries)] if n >= 3], timeout=5) == [3]


def test_failure_names_the_wait_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the answer; last value: \[\]"):
        eventually(lambda: [], timeout=0.05, message="the answer")


def test_message_may_be_built_only_on_failure() -> None:
    built: list[str] = []

    def describe() -> str:
        built.append("x")
        return "the log tail"

    assert eventually(lambda: 1, message=describe) == 1
    assert built == []
    with pytest.raises(AssertionError, match="the log tail"):
        eventually(lambda: 0, timeout=0.02, message=describe)


def test_ignored_exceptions_count_as_a_failed_try() -> None:
    tries = itertools.count()

    def flaky() -> int:
        n = next(tries)
        if n < 2:
            raise ConnectionError("not listening yet")
        return n

    assert eventually(flaky, timeout=5, ignore=(ConnectionError,)) == 2

    def refused() -> int:
        raise ConnectionError("still not listening")

    with pytest.raises(AssertionError, match="still not listening"):
        eventually(refused, timeout=0.02, ignore=(ConnectionError,))
    with pytest.raises(KeyError):  # anything else is a real error, raised at once
        eventually(lambda: {}["k"], timeout=5)


def test_async_version_lets_other_tasks_run_and_awaits_coroutines() -> None:
    async def scenario() -> None:
        flag = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, flag.set)
        assert await eventually_async(flag.is_set, timeout=5) is True

        async def probe() -> bool:
            return flag.is_set()

        assert await eventually_async(probe, timeout=5) is True
        with pytest.raises(AssertionError, match="never"):
            await eventually_async(lambda: False, timeout=0.02, message="never")

    asyncio.run(scenario())
