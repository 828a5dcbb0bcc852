"""The ordered event bus: one dispatch thread, so every subscriber sees one total order.

Publishing never blocks on subscribers: it stamps the event and puts it on a queue.
A subscriber that raises is logged and skipped for that event; the others still see it.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable

import structlog

from pyserving.engine.events import Event

Subscriber = Callable[[Event], None]

log = structlog.get_logger("pyserving.bus")

_STOP = object()


class EventBus:
    def __init__(self, first_seq: int = 1) -> None:
        self._subscribers: list[Subscriber] = []
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._seq = itertools.count(first_seq)
        self._stamp_lock = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber; called in subscription order for every event."""
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> Event:
        """Stamp and enqueue; returns the stamped event. Safe from any thread."""
        with self._idle:
            self._pending += 1
        # Stamping and enqueueing under one lock keeps sequence order equal to queue order.
        with self._stamp_lock:
            stamped = event.stamped(next(self._seq), time.time())
            self._queue.put(stamped)
        return stamped

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="event-bus", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Dispatch what is queued, then stop the dispatch thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every published event has been dispatched (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Event)
            self.dispatch(item)
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()

    def dispatch(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("subscriber_failed", subscriber=repr(subscriber), seq=event.seq)
