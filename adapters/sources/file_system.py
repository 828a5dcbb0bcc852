"""The file-system source: polls a model's base path and publishes its aspired versions.

A version is a child folder whose name parses as a non-negative integer ("00000123" is
123); anything else is skipped. The model's version policy picks which of them to serve.
A base path that is missing or unreadable is logged and changes nothing, so a flaky
mount never unloads what serves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from pyserving.engine.events import AspiredVersion, AspiredVersions, Event

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


@dataclass(frozen=True)
class LatestVersions:
    """Serve the N highest versions (TF Serving's default, N=1)."""

    num_versions: int = 1

    def select(self, versions: Sequence[int]) -> list[int]:
        return sorted(versions, reverse=True)[: self.num_versions]


class FileSystemSource:
    def __init__(
        self,
        model: str,
        base_path: str,
        publish: Callable[[Event], object],
        version_policy: LatestVersions = LatestVersions(),
        poll_wait_s: float = 1.0,
    ) -> None:
        self.model = model
        self.base_path = base_path
        self._publish = publish
        self._policy = version_policy
        self._poll_wait_s = poll_wait_s
        self._last: tuple[AspiredVersion, ...] | None = None
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> AspiredVersions | None:
        """Look once; publish and return the aspired set if it changed since last time."""
        try:
            found = list_versions(self.base_path)
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
            return None
        self._last_error = None
        chosen = self._policy.select(list(found))
        aspired = tuple(AspiredVersion(v, found[v]) for v in sorted(chosen))
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

    def start(self) -> None:
        self.poll_once()
        if self._poll_wait_s > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"source-{self.model}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_wait_s):
            try:
                self.poll_once()
            except Exception:
                log.exception("poll_failed", model=self.model)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
