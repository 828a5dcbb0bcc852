"""The files of one filename prefix: `PREFIX-<UTC timestamp>-<n>.tfrecord`, each created
0600 with `O_EXCL` (they hold request payloads), a new one once the current would pass
`max_bytes`, and only the newest `max_files` kept.

A write that fails part-way is cut back to the last whole record (and an empty file
removed), so readers never meet a torn record, whatever the disk did.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

SUFFIX = ".tfrecord"
FILE_MODE = 0o600
DIR_MODE = 0o700
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def file_pattern(prefix: str) -> re.Pattern[str]:
    """Matches the names of files made for `prefix` (the name part), capturing (time, n)."""
    return re.compile(
        re.escape(os.path.basename(prefix)) + r"-(\d{8}T\d{6}Z)-(\d+)" + re.escape(SUFFIX)
    )


def prefix_files(prefix: str) -> list[Path]:
    """Files made for `prefix`, oldest first (by their name's timestamp, then number)."""
    folder = Path(os.path.dirname(prefix) or ".")
    pattern = file_pattern(prefix)
    found: list[tuple[str, int, Path]] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            found.append((match[1], int(match[2]), folder / name))
    return [path for _, _, path in sorted(found)]


class RecordFiles:
    """Appends framed records for one prefix; raises OSError when the disk refuses."""

    def __init__(
        self,
        prefix: str,
        max_bytes: int,
        max_files: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = prefix
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._serial = 0
        self.path: Path | None = None

    def write(self, framed: bytes) -> None:
        if self._fd is not None and self._size and self._size + len(framed) > self._max_bytes:
            self.close()
        if self._fd is None:
            self._open()
        assert self._fd is not None
        view = memoryview(framed)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._fd, view[written:])
        except OSError:
            self._abandon()
            raise
        self._size += written

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _open(self) -> None:
        folder = os.path.dirname(self.prefix)
        if folder and not os.path.isdir(folder):
            os.makedirs(folder, mode=DIR_MODE, exist_ok=True)
        stamp = time.strftime(_TIMESTAMP, time.gmtime(self._clock()))
        while True:
            self._serial += 1
            path = Path(f"{self.prefix}-{stamp}-{self._serial}{SUFFIX}")
            try:
                self._fd = os.open(path, _OPEN_FLAGS, FILE_MODE)
                break
            except FileExistsError:  # a file of an earlier run, made the same second
                continue
        self.path = path
        self._size = 0
        self._prune()

    def _prune(self) -> None:
        """Remove the oldest files beyond `max_files` (the one just opened counts)."""
        if self._max_files <= 0:
            return
        files = prefix_files(self.prefix)
        for old in files[: max(0, len(files) - self._max_files)]:
            if old != self.path:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    def _abandon(self) -> None:
        """After a failed write: cut the file back to its whole records, or remove it
        when it has none, and close it (the next record opens a new file)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            pass
        finally:
            os.close(fd)
        if self._size == 0 and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
