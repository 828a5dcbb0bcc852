"""The serving path's view of what is available: model → versions, swapped atomically.

Readers take the current snapshot (one attribute read, no lock) and *acquire* a handle,
which counts the request as in flight. The manager removes a version from the map
before it retires the handle, and retiring waits for the in-flight count to reach zero,
so a version is unloaded only after its last request has finished and no request ever
runs on an unloaded model.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import structlog

from pyserving.engine.errors import invalid_argument, not_found, quoted
from pyserving.engine.servable import Servable
from pyserving.engine.servable_id import OfVersion

log = structlog.get_logger("pyserving.serving")


class ServableHandle(OfVersion):
    """A version that requests can use, with the count of requests using it now, and the
    fingerprint of the model bytes it was loaded from (every answer carries it)."""

    def __init__(self, model: str, version: int, servable: Servable, fingerprint: str = "") -> None:
        self.model = model
        self.version = version
        self.servable = servable
        self.fingerprint = fingerprint
        # Counting takes the plain lock (a C call); the condition shares it for the waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_flight = 0
        self._retired = False
        self._served_first = False

    def acquire(self) -> bool:
        with self._lock:
            if self._retired:
                return False
            self._in_flight += 1
            first = not self._served_first
            self._served_first = True
        if first:
            log.info("first_request", model=self.model, version=self.version)
        return True

    def hold(self) -> bool:
        """`acquire` for work that is not a request (a promotion gate's calls): it counts
        as in flight, so the version is not unloaded under it, but is not its first request."""
        with self._lock:
            if self._retired:
                return False
            self._in_flight += 1
        return True

    def retain(self, count: int = 1) -> None:
        """Count `count` more uses by a holder that already acquired the handle.

        For work that outlives its caller's hold (a request queued for a batch): unlike
        `acquire`, it succeeds while the handle is being retired, so queued work drains.
        """
        with self._lock:
            self._in_flight += count

    def release(self, count: int = 1) -> None:
        with self._lock:
            self._in_flight -= count
            if self._in_flight == 0:
                self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def retiring(self) -> bool:
        """True once the unload began: queued work for it should run now, not wait."""
        return self._retired

    def retire_and_wait(self, timeout: float | None = None) -> bool:
        """Refuse new requests, then wait for those in flight; False on timeout."""
        with self._cond:
            self._retired = True
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)


@dataclass(frozen=True)
class ModelEntry:
    versions: Mapping[int, ServableHandle]
    labels: Mapping[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(self.versions)


def describe_request(model: str, version: int | None, label: str | None) -> str:
    """TF Serving's wording for a servable request, used in NOT_FOUND messages."""
    model = quoted(model)  # a client's string: a hostile one is cut
    if version is not None:
        return f"Specific({model}, {version})"
    if label is not None:
        return f"Label({model}, {quoted(label)})"
    return f"Latest({model})"


class Hold:
    """`with servable_map.acquire(...) as handle:` (a class, not a generator: this is
    on every request's path)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: ServableHandle) -> None:
        self._handle = handle

    def __enter__(self) -> ServableHandle:
        return self._handle

    def __exit__(self, *exc_info: object) -> None:
        self._handle.release()


class VersionsEntry(Protocol):
    @property
    def versions(self) -> Mapping[int, ServableHandle]: ...


class WritableServableMap(Protocol):
    """What the manager's map writer uses of a map: `ServableMap` when serving, replay's
    lock-free `ReplayServingMap` (engine/replay.py) when checking a log."""

    @property
    def snapshot(self) -> Mapping[str, VersionsEntry]: ...

    def add(self, handle: ServableHandle) -> None: ...

    def remove(self, model: str, version: int) -> ServableHandle | None: ...

    def labels(self, model: str) -> Mapping[str, int]: ...

    def set_labels(self, model: str, labels: Mapping[str, int]) -> None: ...


class ServableMap:
    def __init__(self) -> None:
        self._snapshot: Mapping[str, ModelEntry] = MappingProxyType({})
        self._write_lock = threading.Lock()
        # Labels live apart from versions: a label may be recorded before any version of
        # its model is available, and it survives the model's last version leaving.
        self._labels: dict[str, Mapping[str, int]] = {}

    @property
    def snapshot(self) -> Mapping[str, ModelEntry]:
        return self._snapshot

    def add(self, handle: ServableHandle) -> None:
        with self._write_lock:
            models = dict(self._snapshot)
            entry = models.get(handle.model)
            versions = dict(entry.versions) if entry else {}
            versions[handle.version] = handle
            labels = self._labels.get(handle.model, MappingProxyType({}))
            models[handle.model] = ModelEntry(MappingProxyType(versions), labels)
            self._snapshot = MappingProxyType(models)

    def remove(self, model: str, version: int) -> ServableHandle | None:
        with self._write_lock:
            models = dict(self._snapshot)
            entry = models.get(model)
            if entry is None or version not in entry.versions:
                return None
            versions = dict(entry.versions)
            handle = versions.pop(version)
            if versions:
                models[model] = ModelEntry(MappingProxyType(versions), entry.labels)
            else:
                del models[model]
            self._snapshot = MappingProxyType(models)
            return handle

    def set_labels(self, model: str, labels: Mapping[str, int]) -> None:
        """Replace a model's labels (label → version); an empty mapping removes them."""
        with self._write_lock:
            frozen = MappingProxyType(dict(labels))
            if labels:
                self._labels[model] = frozen
            else:
                self._labels.pop(model, None)
            entry = self._snapshot.get(model)
            if entry is not None:
                models = dict(self._snapshot)
                models[model] = ModelEntry(entry.versions, frozen)
                self._snapshot = MappingProxyType(models)

    def labels(self, model: str) -> Mapping[str, int]:
        """The labels recorded for a model, whether or not their versions serve now."""
        return self._labels.get(model, MappingProxyType({}))

    def resolve(self, model: str, version: int | None = None, label: str | None = None) -> int:
        """The version a request names (latest when it names none), or NOT_FOUND."""
        entry = self._snapshot.get(model)
        if entry is not None:
            if version is not None:
                if version in entry.versions:
                    return version
            elif label is not None:
                if label not in entry.labels:
                    raise invalid_argument(f"Unrecognized servable version label: {quoted(label)}")
                if entry.labels[label] in entry.versions:
                    return entry.labels[label]
            else:
                return entry.latest
        raise not_found(
            f"Servable not found for request: {describe_request(model, version, label)}"
        )

    def acquire(self, model: str, version: int | None = None, label: str | None = None) -> Hold:
        """Hold a version for one request; it cannot be unloaded until the block exits."""
        return Hold(self._acquire(model, version, label))

    def _acquire(self, model: str, version: int | None, label: str | None) -> ServableHandle:
        # A handle is retired only after it left the map, so a failed acquire means a newer
        # snapshot is already in place: looking again finds the version that replaced it.
        for _ in range(8):
            resolved = self.resolve(model, version, label)
            handle = (
                self._snapshot[model].versions.get(resolved) if model in self._snapshot else None
            )
            if handle is not None and handle.acquire():
                return handle
        raise not_found(
            f"Servable not found for request: {describe_request(model, version, label)}"
        )
