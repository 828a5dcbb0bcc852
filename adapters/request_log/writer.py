"""One thread writes every prefix's records, from one bounded queue.

A request only ever does `put_nowait`: a full queue drops the record (counted, reason
`queue_full`), so a slow or stuck disk never slows a request. A prefix whose files
cannot be written (full disk, a folder that cannot be made) logs one error line when it
starts failing and one line when it works again; each record lost meanwhile is counted
(reason `write_error`), never logged.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from pyserving.adapters.request_log.files import RecordFiles
from pyserving.adapters.request_log.tfrecord import frame

log = structlog.get_logger("pyserving.request_log")

QUEUE_FULL = "queue_full"
WRITE_ERROR = "write_error"
BUILD_ERROR = "build_error"  # a protocol's builder raised (logger.py)
DROP_REASONS = (QUEUE_FULL, WRITE_ERROR, BUILD_ERROR)
DROPPED_METRIC = "pyserving_request_log_dropped_total"


@dataclass(frozen=True)
class WriterOptions:
    max_bytes: int  # --request_log_max_bytes: a file is rotated before it passes this
    max_files: int  # --request_log_max_files: newest files kept per prefix (0: all)
    queue_size: int  # --request_log_queue_size: records waiting for the disk, at most


_STOP = object()
_IDLE_S = 1.0  # how often an idle writer closes the files of prefixes no longer configured


class RecordWriter:
    def __init__(
        self,
        options: WriterOptions,
        on_drop: Callable[[str], None] = lambda reason: None,
        on_written: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._options = options
        self._on_drop = on_drop
        self._on_written = on_written
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(max(1, options.queue_size))
        self._files: dict[str, RecordFiles] = {}
        self._failing: dict[str, int] = {}  # prefix → records lost since it began failing
        self._retained: frozenset[str] | None = None  # None: keep every prefix's file open
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, prefix: str, record: Message) -> None:
        """Queue `record` (which the writer now owns) for `prefix`; never blocks."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((prefix, record))
        except queue.Full:
            self._on_drop(QUEUE_FULL)

    def retain(self, prefixes: Collection[str]) -> None:
        """Only these prefixes are configured now: the writer closes the others' files
        (within a second; never blocks the caller)."""
        self._retained = frozenset(prefixes)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (for at most `timeout_s`), then close every file."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout_s)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_S)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            retained = self._retained
            if retained is not None:
                for prefix in [p for p in self._files if p not in retained]:
                    self._files.pop(prefix).close()
                    self._failing.pop(prefix, None)
            if isinstance(item, tuple):  # (prefix, record), as `log` queues it
                prefix, record = item
                self._write(prefix, record)
        for files in self._files.values():
            files.close()
        self._files.clear()

    def _write(self, prefix: str, record: Message) -> None:
        files = self._files.get(prefix)
        if files is None:
            files = self._files[prefix] = RecordFiles(
                prefix, self._options.max_bytes, self._options.max_files, self._clock
            )
        try:
            files.write(frame(record.SerializeToString()))
        except OSError as exc:
            self._on_drop(WRITE_ERROR)
            lost = self._failing.get(prefix)
            if lost is None:
                log.error(
                    "request_log_write_failed",
                    prefix=prefix,
                    error=str(exc),
                    hint=f"records of this prefix are dropped (counted in {DROPPED_METRIC}"
                    '{reason="write_error"}) until writing works again; free disk space or '
                    "point filename_prefix at a writable folder",
                )
            self._failing[prefix] = (lost or 0) + 1
            return
        lost = self._failing.pop(prefix, None)
        if lost is not None:
            log.info("request_log_write_recovered", prefix=prefix, dropped=lost)
        self._on_written()
