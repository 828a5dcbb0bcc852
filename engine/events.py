"""Events that travel on the bus, and their one-line JSON form for the event log.

Two kinds: *facts* from outside the manager (a source's aspired versions, a loader's
result, ...) and *transitions* of a servable version's state machine. Facts are what
replay feeds back into a fresh manager; transitions are what it checks the manager
decides again. Every event gets its sequence number and timestamp from the bus when it
is published, so the log is one total order.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of all bus events. `seq` and `time` are stamped by the bus on publish."""

    kind: ClassVar[str] = "event"
    seq: int = field(default=0, kw_only=True)
    time: float = field(default=0.0, kw_only=True)

    def stamped(self, seq: int, time: float) -> Event:
        return dataclasses.replace(self, seq=seq, time=time)

    def to_dict(self) -> dict[str, Any]:
        record = {"seq": self.seq, "time": self.time, "kind": self.kind}
        for f in dataclasses.fields(self):
            if f.name not in record:
                record[f.name] = _plain(getattr(self, f.name))
        return record

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class AspiredVersion:
    version: int
    path: str


@dataclass(frozen=True)
class ServerStarted(Event):
    """Header record: which pyserving, with which flags, wrote the events that follow."""

    kind: ClassVar[str] = "server_started"
    pyserving_version: str
    flags: dict[str, Any]
    models: tuple[str, ...]
    config_digest: str = ""  # sha256 of the model config in force at start (see api/server.py)


@dataclass(frozen=True)
class AspiredVersions(Event):
    """A source's complete wish for one model: exactly these versions should be served."""

    kind: ClassVar[str] = "aspired_versions"
    model: str
    versions: tuple[AspiredVersion, ...]
    source: str = "file_system"


@dataclass(frozen=True)
class LoadSucceeded(Event):
    kind: ClassVar[str] = "load_succeeded"
    model: str
    version: int
    duration_s: float


@dataclass(frozen=True)
class WarmupFinished(Event):
    """A version's warm-up requests were replayed during its load (before it serves).

    Published by the loading thread just before the load's own result; `error` is empty
    when every record ran, else it names the record that failed (and the load fails).
    """

    kind: ClassVar[str] = "warmup_finished"
    model: str
    version: int
    records: int
    iterations: int
    duration_s: float
    error: str = ""


@dataclass(frozen=True)
class LoadFailed(Event):
    """A load attempt failed. `will_retry` attempts stay in `loading`; the last one errors."""

    kind: ClassVar[str] = "load_failed"
    model: str
    version: int
    error: str
    attempt: int
    will_retry: bool
    duration_s: float


@dataclass(frozen=True)
class UnloadFinished(Event):
    kind: ClassVar[str] = "unload_finished"
    model: str
    version: int
    duration_s: float


@dataclass(frozen=True)
class ShutdownRequested(Event):
    """The server is stopping: every model's aspired set becomes empty."""

    kind: ClassVar[str] = "shutdown_requested"
    reason: str


@dataclass(frozen=True)
class ServerStopped(Event):
    """Footer record of a clean stop: every decision made before it is in the log.

    Replay holds a segment that ends without one to a lower standard (a crash may have
    lost the last decisions); one that ends with it must account for every decision.
    """

    kind: ClassVar[str] = "server_stopped"
    reason: str


@dataclass(frozen=True)
class ConfigReloaded(Event):
    """A model config was applied (at start-up, from the polled file, or by the RPC)."""

    kind: ClassVar[str] = "config_reloaded"
    origin: str
    models: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionLabelsSet(Event):
    """The configured labels of one model (label → version), wanted from now on."""

    kind: ClassVar[str] = "version_labels_set"
    model: str
    labels: dict[str, int]


@dataclass(frozen=True)
class LabelMoved(Event):
    """A label now resolves to `version` (None: removed); what requests naming it get."""

    kind: ClassVar[str] = "label_moved"
    model: str
    label: str
    version: int | None
    previous: int | None
    reason: str = ""


@dataclass(frozen=True)
class Transition(Event):
    """One state change of one servable version's machine."""

    kind: ClassVar[str] = "transition"
    model: str
    version: int
    src: str
    dst: str
    trigger: str
    reason: str = ""


@dataclass(frozen=True)
class BatchRun(Event):
    """One batch executed; published per batch, never per request."""

    kind: ClassVar[str] = "batch_run"
    model: str
    version: int
    signature: str
    size: int
    padded_size: int
    oldest_wait_s: float
    # Per request in the batch: its rows and its wait from enqueue to run (TF Serving's
    # batching_session metrics are per task); how many input tensors each request fed.
    task_sizes: tuple[int, ...] = ()
    task_waits_s: tuple[float, ...] = ()
    inputs: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        ServerStarted,
        AspiredVersions,
        LoadSucceeded,
        WarmupFinished,
        LoadFailed,
        UnloadFinished,
        ShutdownRequested,
        ServerStopped,
        ConfigReloaded,
        VersionLabelsSet,
        LabelMoved,
        Transition,
        BatchRun,
    )
}


def from_dict(record: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form (the inverse of `Event.to_dict`)."""
    kind = record.get("kind")
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    values = {k: v for k, v in record.items() if k != "kind"}
    if cls is AspiredVersions:
        values["versions"] = tuple(AspiredVersion(**v) for v in values["versions"])
    elif cls is ServerStarted:
        values["models"] = tuple(values["models"])
    elif cls is ConfigReloaded:
        for name in ("models", "added", "removed"):
            values[name] = tuple(values[name])
    elif cls is BatchRun:
        for name in ("task_sizes", "task_waits_s"):
            values[name] = tuple(values.get(name, ()))
    return cls(**values)
