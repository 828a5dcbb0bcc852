"""Events that travel on the bus, and their one-line JSON form for the event log.

Two kinds: *facts* from outside the manager (a source's aspired versions, a loader's
result, ...) and *transitions* of a servable version's state machine. Facts are what
replay feeds back into a fresh manager; transitions are what it checks the manager
decides again. Every event gets its sequence number and timestamp from the bus when it
is published, so the log is one total order.

One generic codec (msgspec, driven by each dataclass's type hints) writes and reads every
event: a record is `{"seq", "time", "kind", <the fields in declaration order>}`, and a
new event class needs nothing but its entry in `EVENT_TYPES`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from pyserving.engine.servable_id import OfVersion


@dataclass(frozen=True)
class Event:
    """Base of all bus events. `seq` and `time` are stamped by the bus on publish."""

    kind: ClassVar[str] = "event"
    seq: int = field(default=0, kw_only=True)
    time: float = field(default=0.0, kw_only=True)

    def stamped(self, seq: int, time: float) -> Event:
        return dataclasses.replace(self, seq=seq, time=time)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (lists for tuples, dicts for nested dataclasses)."""
        record: dict[str, Any] = msgspec.to_builtins(self._record())
        return record

    def _record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"seq": self.seq, "time": self.time, "kind": self.kind}
        for name in _field_names(type(self)):
            record[name] = getattr(self, name)
        return record


# Per-class caches, dicts rather than functools.cache: mypy cannot see a frozen dataclass's
# class object as Hashable (it reads the instances' __hash__), and the lookup is the same.
_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields if f.name not in ("seq", "time"))
    return names


_ENCODER = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    """One event as one line of compact JSON (no newline)."""
    return _ENCODER.encode(event._record())


@dataclass(frozen=True)
class VersionEvent(OfVersion, Event):
    """A fact about one servable version: its model and version come first."""

    model: str
    version: int


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
class LoadSucceeded(VersionEvent):
    """A version loaded. `fingerprint` says which model bytes it serves (adapters/loaders/
    provenance.py: `saved_model:...` or `sha256:...`); "" in logs written before it was
    recorded, and where the platform could not read it."""

    kind: ClassVar[str] = "load_succeeded"
    duration_s: float
    fingerprint: str = ""


@dataclass(frozen=True)
class WarmupFinished(VersionEvent):
    """A version's warm-up requests were run during its load (before it serves).

    Published by the loading thread just before the load's own result; `error` is empty
    when every record ran, else it names the record that failed (and the load fails).
    """

    kind: ClassVar[str] = "warmup_finished"
    records: int
    iterations: int
    duration_s: float
    error: str = ""


@dataclass(frozen=True)
class LoadFailed(VersionEvent):
    """A load attempt failed. `will_retry` attempts stay in `loading`; the last one errors."""

    kind: ClassVar[str] = "load_failed"
    error: str
    attempt: int
    will_retry: bool
    duration_s: float


@dataclass(frozen=True)
class VersionQuiesced(VersionEvent):
    """An unloading version's last in-flight request finished; its unload starts now.

    `drain_s` is the wait for the `in_flight` requests it had when the unload began, so
    `UnloadFinished.duration_s` times the unload alone.
    """

    kind: ClassVar[str] = "version_quiesced"
    in_flight: int
    drain_s: float


@dataclass(frozen=True)
class UnloadFinished(VersionEvent):
    """The servable is unloaded (timed from its quiesced point) and the version ended."""

    kind: ClassVar[str] = "unload_finished"
    duration_s: float


@dataclass(frozen=True)
class VersionForgotten(VersionEvent):
    """The manager dropped an ended version from its table (it keeps the last few per model).

    GetModelStatus no longer lists it, and its per-version metric series are removed, so
    a model that gets a new version every hour keeps a bounded number of series.
    """

    kind: ClassVar[str] = "version_forgotten"


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
class PromotionGatesSet(Event):
    """Which labels of which models move only after a passing promotion verdict (model →
    labels), from the promotion gates file; published once per run, after its header, so
    replay knows which label moves needed a verdict."""

    kind: ClassVar[str] = "promotion_gates_set"
    gates: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class PromotionRequested(Event):
    """A gated label would move from `from_version` to `to_version`: it stays until the
    verdict (engine/promotion.py). A decision of the label keeper, like LabelMoved."""

    kind: ClassVar[str] = "promotion_requested"
    model: str
    label: str
    from_version: int
    to_version: int


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome and the figures it was judged on (engine/promotion_gates.py)."""

    gate: str  # signature | outputs | latency
    passed: bool
    figures: dict[str, float]
    reason: str = ""


@dataclass(frozen=True)
class PromotionVerdict(Event):
    """The gates' verdict on moving `label` from `from_version` to `to_version`: a fact (it
    comes from the load pool's thread), on which the label moves (passed) or stays."""

    kind: ClassVar[str] = "promotion_verdict"
    model: str
    label: str
    from_version: int
    to_version: int
    passed: bool
    reason: str
    gates: tuple[GateResult, ...] = ()
    duration_s: float = 0.0


@dataclass(frozen=True)
class Transition(VersionEvent):
    """One state change of one servable version's machine."""

    kind: ClassVar[str] = "transition"
    src: str
    dst: str
    trigger: str
    reason: str = ""


@dataclass(frozen=True)
class BatchRun(VersionEvent):
    """One batch executed; published per batch, never per request."""

    kind: ClassVar[str] = "batch_run"
    signature: str
    size: int
    padded_size: int
    oldest_wait_s: float
    # Per request in the batch: its rows and its wait from enqueue to run (TF Serving's
    # batching_session metrics are per task); how many input tensors each request fed.
    task_sizes: tuple[int, ...] = ()
    task_waits_s: tuple[float, ...] = ()
    inputs: int = 0


@dataclass(frozen=True)
class FrontendStarted(Event):
    """A front-end process (`--workers`) listens: its worker slot, its pid, and how many
    times that slot was started before (0 for the first)."""

    kind: ClassVar[str] = "frontend_started"
    worker: int
    pid: int
    restarts: int = 0


@dataclass(frozen=True)
class FrontendExited(Event):
    """A front-end process ended: its exit code, or the signal that killed it, whether the
    engine starts its slot again (not while the server stops), and whether the engine
    killed it for not answering (`unresponsive`)."""

    kind: ClassVar[str] = "frontend_exited"
    worker: int
    pid: int
    exit_code: int | None
    signal: str = ""
    restarting: bool = False
    unresponsive: bool = False


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        ServerStarted,
        AspiredVersions,
        LoadSucceeded,
        WarmupFinished,
        LoadFailed,
        VersionQuiesced,
        UnloadFinished,
        VersionForgotten,
        ShutdownRequested,
        ServerStopped,
        ConfigReloaded,
        VersionLabelsSet,
        LabelMoved,
        PromotionGatesSet,
        PromotionRequested,
        PromotionVerdict,
        Transition,
        BatchRun,
        FrontendStarted,
        FrontendExited,
    )
}


def event_type(kind: object) -> type[Event]:
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    return cls


def from_dict(record: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form (the inverse of `Event.to_dict`); ValueError
    (msgspec.ValidationError) names the field that does not fit."""
    event: Event = msgspec.convert(record, event_type(record.get("kind")))
    return event


class Head(msgspec.Struct, frozen=True):
    """A record's place in the log (sequence, time, kind), read without its fields."""

    seq: int = 0
    time: float = 0.0
    kind: str = ""


@dataclass(slots=True)
class Skimmed:
    """Consecutive records of one kind read only for their place in the log: what replay
    needs of BatchRuns, at a fraction of the cost of decoding each one."""

    kind: str
    first_seq: int
    first_time: float
    seq: int  # the last record's
    time: float
    count: int = 1


_HEAD = msgspec.json.Decoder(Head)


_DECODERS: dict[type[Event], msgspec.json.Decoder[Event]] = {}


def _decoder(cls: type[Event]) -> msgspec.json.Decoder[Event]:
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    return decoder


def decode(line: bytes) -> Event:
    """The event one line of the log holds (the inverse of `encode`); ValueError if the
    line is not a whole record of a known kind (a torn write, say)."""
    return _decoder(event_type(_HEAD.decode(line).kind)).decode(line)


def decode_head(line: bytes) -> Head:
    """Only the sequence number, time and kind of one line; ValueError if not JSON."""
    return _HEAD.decode(line)


def decode_as(kind: str, line: bytes) -> Event:
    """The event of a line whose kind `decode_head` read already."""
    return _decoder(event_type(kind)).decode(line)
