"""A time limit on one load attempt (`--load_timeout_seconds`).

Python cannot kill a thread, so an attempt that runs past the limit is *abandoned*: the
version's harness reports it as a failed attempt at once and moves on, while the attempt's own
thread runs on in the background. When that thread finally returns, its servable is
unloaded and dropped, never made available. Abandoned threads are bounded: once
`max_abandoned` of them are still running (the manager allows a few per load thread),
further attempts fail at once, saying so, instead of starting yet another thread that
may hang too; they can succeed again once the hung ones return.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from pyserving.engine.servable import Servable

log = structlog.get_logger("pyserving.manager")


class LoadTimedOut(Exception):
    """A load attempt ran past --load_timeout_seconds, or could not start for hung ones."""


class _Attempt:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.result: Servable | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None


class TimedLoads:
    """Runs load attempts under a time limit; `timeout_s <= 0` runs them inline, unlimited."""

    def __init__(self, timeout_s: float, max_abandoned: int) -> None:
        self.timeout_s = timeout_s
        self._max_abandoned = max(1, max_abandoned)
        self._lock = threading.Lock()
        self._abandoned: list[_Attempt] = []

    def abandoned_running(self) -> int:
        """Abandoned attempts whose threads are still running."""
        with self._lock:
            self._abandoned = [a for a in self._abandoned if a.thread and a.thread.is_alive()]
            return len(self._abandoned)

    def run(self, load: Callable[[], Servable], what: str) -> Servable:
        """The servable `load()` returns; its exception; or LoadTimedOut past the limit."""
        if self.timeout_s <= 0:
            return load()
        hung = self.abandoned_running()
        if hung >= self._max_abandoned:
            raise LoadTimedOut(
                f"load not started: {hung} earlier load(s) are still running past "
                f"--load_timeout_seconds={self.timeout_s:g}; fix those versions and restart "
                "the server to reclaim their threads"
            )
        attempt = _Attempt()
        attempt.thread = threading.Thread(
            target=self._attempt, args=(attempt, load, what), name=f"load {what}", daemon=True
        )
        attempt.thread.start()
        attempt.done.wait(self.timeout_s)
        with attempt.lock:
            if not attempt.done.is_set():
                attempt.abandoned = True
                with self._lock:
                    self._abandoned.append(attempt)
                raise LoadTimedOut(
                    f"load timed out after {self.timeout_s:g}s (--load_timeout_seconds); the "
                    "loading thread is left to finish in the background and what it loads is "
                    "discarded"
                )
        if attempt.error is not None:
            raise attempt.error
        assert attempt.result is not None
        return attempt.result

    @staticmethod
    def _attempt(attempt: _Attempt, load: Callable[[], Servable], what: str) -> None:
        result: Servable | None = None
        error: BaseException | None = None
        try:
            result = load()
        except BaseException as exc:  # handed to the waiting load job, or logged if abandoned
            error = exc
        with attempt.lock:
            attempt.result, attempt.error = result, error
            attempt.done.set()
            abandoned = attempt.abandoned
        if not abandoned:
            return
        attempt.result = attempt.error = None
        log.warning(
            "late_load_discarded",
            servable=what,
            outcome="loaded" if error is None else f"{type(error).__name__}: {error}",
        )
        if result is not None:
            try:
                result.unload()
            except Exception:
                log.exception("late_load_unload_raised", servable=what)
