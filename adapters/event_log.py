"""The durable event log: every bus event as one JSON line, flushed per event.

A line is written with a single `write` of the whole record plus its newline, so a
crash mid-write leaves at most one torn last line; readers skip it (and say so). A
restarted server appends after whatever is there, starting on a fresh line.

Size-bounded: once the file would pass `max_bytes`, it is rotated the way logging's
RotatingFileHandler does it (`LOG` → `LOG.1` → ... → `LOG.N`, the oldest dropped), so
a rotated set read oldest first (`LOG.N` ... `LOG.1`, `LOG`) is the log in order.

Durability (`fsync`): every event is flushed to the operating system, so a killed
*process* loses nothing already written. What the `fsync` mode decides is what a
*machine* crash or power loss may lose:
  - `always`: fsync per event; nothing is lost, at the cost of one disk sync per event
    (milliseconds on a spinning disk, tens of microseconds on an SSD);
  - `interval`: a background thread syncs at most every `fsync_interval_s` when there
    is something new; at most that much of the log is lost, at no cost on the bus thread;
  - `never`: the operating system decides (often up to 30 s).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import IO

import structlog

from pyserving.engine.events import Event, Skimmed, decode, decode_as, decode_head, encode

log = structlog.get_logger("pyserving.event_log")

TAIL_BYTES = 64 * 1024  # enough for the last few events; a restart reads no more


class FsyncMode(StrEnum):
    """When the event log is synced to disk (--event_log_fsync)."""

    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


class EventLogWriter:
    """Bus subscriber appending each event to `path`, rotating and syncing as configured."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync: FsyncMode | str = FsyncMode.NEVER,
        max_bytes: int = 0,
        backups: int = 5,
        fsync_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = FsyncMode(fsync)
        self._max_bytes = max(0, max_bytes)
        self._backups = max(0, backups)
        self._lock = threading.Lock()
        self._dirty = False
        self._file: IO[bytes] = self._open()
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None
        if self._fsync is FsyncMode.INTERVAL:
            self._syncer = threading.Thread(
                target=self._sync_every,
                args=(max(0.01, fsync_interval_s),),
                name="event-log-fsync",
                daemon=True,
            )
            self._syncer.start()

    def _open(self) -> IO[bytes]:
        file = open(self.path, "ab")  # noqa: SIM115 - lives as long as the server
        if file.tell() > 0 and not _ends_with_newline(self.path):
            file.write(b"\n")  # fence off a torn line left by a crash
        return file

    def __call__(self, event: Event) -> None:
        line = encode(event) + b"\n"
        with self._lock:
            if self._max_bytes and self._file.tell() + len(line) > self._max_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            if self._fsync is FsyncMode.ALWAYS:
                os.fsync(self._file.fileno())
            else:
                self._dirty = True

    def _rotate(self) -> None:
        """Shift `LOG.i` to `LOG.i+1` (dropping the oldest) and start an empty `LOG`."""
        if self._file.tell() == 0:
            return  # one event larger than max_bytes: keep it rather than loop
        if self._fsync is not FsyncMode.NEVER:
            os.fsync(self._file.fileno())
        self._file.close()
        if self._backups == 0:
            self.path.unlink()
        else:
            oldest = backup_path(self.path, self._backups)
            oldest.unlink(missing_ok=True)
            for index in range(self._backups - 1, 0, -1):
                source = backup_path(self.path, index)
                if source.exists():
                    source.rename(backup_path(self.path, index + 1))
            self.path.rename(backup_path(self.path, 1))
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._dirty = False

    def _sync_every(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            self.sync()

    def sync(self) -> None:
        """Sync what was written to disk now (the interval mode's thread calls this)."""
        with self._lock:
            if self._dirty and not self._file.closed:
                os.fsync(self._file.fileno())
                self._dirty = False

    def close(self) -> None:
        self._closed.set()
        if self._syncer is not None:
            self._syncer.join(timeout=5)
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                if self._fsync is not FsyncMode.NEVER:
                    os.fsync(self._file.fileno())
                self._file.close()


def backup_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def rotated_set(path: str | os.PathLike[str]) -> list[Path]:
    """`path` and its rotated backups, oldest first: the order their events were written."""
    base = Path(path)
    backups = []
    index = 1
    while backup_path(base, index).exists():
        backups.append(backup_path(base, index))
        index += 1
    files = list(reversed(backups))
    if base.exists():
        files.append(base)
    return files


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def last_sequence(path: str | os.PathLike[str]) -> int:
    """The highest sequence number in an existing log set (0 if none), so a restart continues.

    Reads only the tail of the newest non-empty file of the rotated set, so a restart
    costs the same for a 1 GB log as for an empty one.
    """
    for file in reversed(rotated_set(path)):
        last = _last_sequence_in_tail(file)
        if last:
            return last
    return 0


def _last_sequence_in_tail(path: Path) -> int:
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb") as f:
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
    lines = tail.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line of the tail is probably cut
    for raw in reversed(lines):
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, TypeError, KeyError):
            continue
    if size > TAIL_BYTES:  # not one whole record in the tail: read the whole file
        return max((e.seq for e in read_events(path)), default=0)
    return 0


SkipReport = Callable[[Path, int, str], None]


def read_events(path: str | os.PathLike[str], on_skip: SkipReport | None = None) -> Iterator[Event]:
    """Events in file order; undecodable lines (a torn write) are skipped with a warning.

    `on_skip(path, line_number, error)` hears of each skipped line, for reports.
    """
    return _read(path, on_skip, decode)


def skim_events(
    path: str | os.PathLike[str], skim: frozenset[str], on_skip: SkipReport | None = None
) -> Iterator[Event | Skimmed]:
    """As `read_events`, but records of the kinds in `skim` are not decoded: each run of
    them with consecutive sequence numbers comes as one `Skimmed`."""
    run: Skimmed | None = None
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.isspace():
                continue
            try:
                head = decode_head(raw)
                kind = head.kind
                if kind in skim:
                    if run is not None and kind == run.kind and head.seq == run.seq + 1:
                        run.seq, run.time = head.seq, head.time
                        run.count += 1
                        continue
                    if run is not None:
                        yield run
                    run = Skimmed(kind, head.seq, head.time, head.seq, head.time)
                    continue
                event = decode_as(kind, raw)
            except (ValueError, TypeError, KeyError) as exc:
                _skipped(path, number, exc, on_skip)
                continue
            if run is not None:
                yield run
                run = None
            yield event
    if run is not None:
        yield run


def _read(
    path: str | os.PathLike[str],
    on_skip: SkipReport | None,
    decode_line: Callable[[bytes], Event],
) -> Iterator[Event]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.isspace():
                continue
            try:
                yield decode_line(raw)
            except (ValueError, TypeError, KeyError) as exc:
                _skipped(path, number, exc, on_skip)


def _skipped(
    path: str | os.PathLike[str], number: int, exc: Exception, on_skip: SkipReport | None
) -> None:
    log.warning("event_log_line_skipped", path=str(path), line=number, error=str(exc))
    if on_skip is not None:
        on_skip(Path(path), number, str(exc))


def log_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to replay for the given logs: each with its rotated backups, oldest first.

    A path named twice (directly and as another's backup) is read once. Files are put
    in the order of their first sequence number, so the order of arguments is free.
    """
    seen: dict[Path, Path] = {}
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"no event log at {path}")
        for file in rotated_set(path) or [Path(path)]:
            seen.setdefault(file.resolve(), file)
    files = list(seen.values())
    return sorted(files, key=_first_sequence)


def _first_sequence(path: Path) -> int:
    with open(path, "rb") as f:
        for raw in f:
            try:
                return int(json.loads(raw)["seq"])
            except (ValueError, TypeError, KeyError):
                continue
    return 0


def read_log_set(
    files: Iterable[Path], on_skip: SkipReport | None = None, skim: frozenset[str] = frozenset()
) -> Iterator[Event | Skimmed]:
    """The events of several files, one after the other (`skim`: see `skim_events`)."""
    for file in files:
        yield from skim_events(file, skim, on_skip)
