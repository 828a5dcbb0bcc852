"""The shared test tools: `eventually` returns the first truthy value and its failure says
what it awaited and what it last saw (the message is what a failing suite shows); a
missing requirement skips on a laptop and fails in CI."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.util.requirements import in_ci, optional_binary, require_binary, require_module
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


@pytest.mark.parametrize(
    ("value", "ci"), [("true", True), ("1", True), ("", False), ("0", False), ("false", False)]
)
def test_ci_is_any_non_false_value(monkeypatch: pytest.MonkeyPatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_a_missing_requirement_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_here"):
        require_module("no_such_module_here", "hint")
    with pytest.raises(pytest.skip.Exception, match="no-such-binary-here not installed: hint"):
        require_binary("no-such-binary-here", "hint")
    assert optional_binary("no-such-binary-here", "hint") is None  # the test falls back


@pytest.mark.parametrize("value", ["true", "1"])
def test_a_missing_requirement_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"no_such_module_here.*CI is set"):
        require_module("no_such_module_here", "hint")
    with pytest.raises(pytest.fail.Exception, match="no-such-binary-here"):
        require_binary("no-such-binary-here", "hint")
    with pytest.raises(pytest.fail.Exception, match="no-such-binary-here"):
        optional_binary("no-such-binary-here", "hint")


def test_a_present_requirement_is_returned() -> None:
    assert require_module("json", "hint").dumps([1]) == "[1]"
    assert require_binary("sh", "hint").endswith("/sh")
