"""The storage path source: polls a model's base path and publishes its aspired versions.

TF Serving's FileSystemStoragePathSource, for every store a base path may name: a local
folder, or s3:// and gs:// through `object_store.py`.

A version is a child folder whose name parses as a non-negative integer ("00000123" is
123); anything else is skipped. The model's version selection picks which of them to serve.
A base path that is missing or unreadable is logged and changes nothing, so a flaky
mount never unloads what serves.

A version folder is aspired only once it looks complete: it holds a saved_model.pb (or
.pbtxt) and has been quiet, i.e. unchanged since the previous poll or untouched for a
poll period. So `cp -r` of a version into the watched folder is picked up after the
copy, not loaded half-way and counted as a failed load.

Where the folders live is a `VersionStorage`: local disk here, object stores in
`object_store.py` (which also downloads a chosen version to local disk before it is
aspired, since TensorFlow loads from local files).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from pyserving.adapters.sources.version_selection import (
    LATEST_ONE,
    LatestVersions,
    VersionSelection,
)
from pyserving.engine.events import AspiredVersion, AspiredVersions, Event

__all__ = ["LatestVersions", "StoragePathSource", "list_versions", "parse_version"]

log = structlog.get_logger("pyserving.source")


def parse_version(name: str) -> int | None:
    """'7' and '0007' are version 7; names with anything but digits are not versions."""
    if not name.isascii() or not name.isdigit():
        return None
    return int(name)


def list_versions(base_path: str) -> dict[int, str]:
    """Version number → folder path. Raises OSError if the base path cannot be listed."""
    found: dict[int, str] = {}
    with os.scandir(base_path) as entries:
        for entry in entries:
            version = parse_version(entry.name)
            if version is None or not entry.is_dir():
                continue
            # Two spellings of one number ("7", "007"): keep the first in name order.
            if version not in found or entry.name < os.path.basename(found[version]):
                found[version] = entry.path
    return found


SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")

Fingerprint = tuple[tuple[str, int, int], ...] | tuple[tuple[str, int], ...]


def fingerprint(folder: str) -> tuple[Fingerprint, float]:
    """(relative path, size, mtime_ns) of every file below `folder`, and the newest mtime."""
    entries: list[tuple[str, int, int]] = []
    newest = 0.0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue  # vanished while we looked: the next poll will see the change
            entries.append(
                (os.path.relpath(os.path.join(root, name), folder), st.st_size, st.st_mtime_ns)
            )
            newest = max(newest, st.st_mtime)
    return tuple(sorted(entries)), newest


def has_saved_model(folder: str, marker_files: Sequence[str] = SAVED_MODEL_FILES) -> bool:
    """True if the folder holds one of its platform's marker files (saved_model.pb, ...)."""
    return any(os.path.isfile(os.path.join(folder, f)) for f in marker_files)


class VersionStorage(Protocol):
    """Where a model's version folders live."""

    def list_versions(self) -> dict[int, str]:
        """Version → folder; raises OSError when the base path cannot be listed now."""
        ...

    def inspect(self, path: str) -> tuple[Fingerprint, float] | None:
        """The folder's fingerprint and newest change time; None while it has no model."""
        ...

    def materialize(self, version: int, path: str) -> str:
        """A local folder holding the version (downloads if needed); raises OSError."""
        ...


class LocalStorage:
    def __init__(self, base_path: str, marker_files: Sequence[str] = SAVED_MODEL_FILES) -> None:
        self.base_path = base_path
        self.marker_files = tuple(marker_files)

    def list_versions(self) -> dict[int, str]:
        return list_versions(self.base_path)

    def inspect(self, path: str) -> tuple[Fingerprint, float] | None:
        return fingerprint(path) if has_saved_model(path, self.marker_files) else None

    def materialize(self, version: int, path: str) -> str:
        return path


class StoragePathSource:
    """One model's source: its base path's versions, by its version selection, on the bus."""

    def __init__(
        self,
        model: str,
        base_path: str,
        publish: Callable[[Event], object],
        version_selection: VersionSelection = LATEST_ONE,
        poll_wait_s: float = 1.0,
        storage: VersionStorage | None = None,
        marker_files: Sequence[str] = SAVED_MODEL_FILES,
    ) -> None:
        self.model = model
        self.base_path = base_path
        self._storage = storage or LocalStorage(base_path, marker_files)
        self._publish = publish
        self._policy = version_selection
        self._poll_wait_s = poll_wait_s
        self._last: tuple[AspiredVersion, ...] | None = None
        self._last_error: str | None = None
        self._failures = 0  # consecutive listing failures, for backoff
        self._ready: set[str] = set()  # version folders seen complete
        self._pending: dict[str, Fingerprint] = {}  # folders still being written
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> AspiredVersions | None:
        """Look once; publish and return the aspired set if it changed since last time."""
        with self._poll_lock:  # copying() must not see a version between ready and published
            return self._poll()

    def _poll(self) -> AspiredVersions | None:
        try:
            found = self._storage.list_versions()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self._last_error:  # say it once per distinct problem, not per poll
                log.error(
                    "base_path_unreadable",
                    model=self.model,
                    base_path=self.base_path,
                    error=error,
                    hint="create the folder or fix --model_base_path; serving versions are kept",
                )
                self._last_error = error
            self._failures += 1
            return None
        self._last_error = None
        self._failures = 0
        self._ready &= set(found.values())  # a deleted folder must prove itself again
        self._pending = {p: f for p, f in self._pending.items() if p in found.values()}
        found = {v: path for v, path in found.items() if self._is_complete(path)}
        chosen = self._policy.select(list(found))
        try:
            aspired = tuple(
                AspiredVersion(v, self._storage.materialize(v, found[v])) for v in sorted(chosen)
            )
        except Exception as exc:  # a failed download: keep the last wish, try again next poll
            log.error(
                "version_fetch_failed", model=self.model, error=f"{type(exc).__name__}: {exc}"
            )
            return None
        if aspired == self._last:
            return None
        if not found:
            log.warning("no_versions_found", model=self.model, base_path=self.base_path)
        for v in aspired:
            if self._last is None or v not in self._last:
                log.info("version_found", model=self.model, version=v.version, path=v.path)
        self._last = aspired
        event = AspiredVersions(model=self.model, versions=aspired)
        self._publish(event)
        return event

    def copying(self) -> bool:
        """True while a version folder holds a saved_model but is still being written.

        Once False, every complete version has been published to the bus.
        """
        with self._poll_lock:
            return any(self._pending.values())

    def _is_complete(self, path: str) -> bool:
        if path in self._ready:
            return True
        inspected = self._storage.inspect(path)
        if inspected is None:
            self._pending[path] = ()
            return False
        current, newest = inspected
        quiet_for = time.time() - newest
        # Polling once (poll wait 0) gives no second look: take what is there.
        quiet_needed = max(self._poll_wait_s, 1.0) if self._poll_wait_s > 0 else 0.0
        if self._pending.get(path) == current or quiet_for >= quiet_needed:
            self._pending.pop(path, None)
            self._ready.add(path)
            return True
        if path not in self._pending:
            log.info("version_incomplete", model=self.model, path=path, hint="waiting for the copy")
        self._pending[path] = current
        return False

    def start(self) -> None:
        self.poll_once()
        if self._poll_wait_s > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"source-{self.model}", daemon=True
            )
            self._thread.start()

    def next_wait_s(self) -> float:
        """The poll period, doubled per consecutive listing failure up to a minute (backoff)."""
        if self._failures == 0:
            return self._poll_wait_s
        return min(self._poll_wait_s * 2**self._failures, max(60.0, self._poll_wait_s))

    def _run(self) -> None:
        while not self._stop.wait(self.next_wait_s()):
            try:
                self.poll_once()
            except Exception:
                log.exception("poll_failed", model=self.model)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
