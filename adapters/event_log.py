"""The durable event log: every bus event as one JSON line, flushed per event.

A line is written with a single `write` of the whole record plus its newline, so a
crash mid-write leaves at most one torn last line; readers skip it (and say so). A
restarted server appends after whatever is there, starting on a fresh line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import structlog

from pyserving.engine.events import Event, from_dict

log = structlog.get_logger("pyserving.event_log")


class EventLogWriter:
    def __init__(self, path: str | os.PathLike[str], fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - lives as long as the server
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write(b"\n")  # fence off a torn line left by a crash

    def __call__(self, event: Event) -> None:
        line = event.to_json().encode() + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def last_sequence(path: str | os.PathLike[str]) -> int:
    """The highest sequence number in an existing log (0 if none), so a restart continues."""
    last = 0
    if Path(path).exists():
        for event in read_events(path):
            last = max(last, event.seq)
    return last


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Events in file order; undecodable lines (a torn write) are skipped with a warning."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield from_dict(json.loads(raw))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("event_log_line_skipped", path=str(path), line=number, error=str(exc))
