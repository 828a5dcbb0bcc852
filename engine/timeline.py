"""The lifecycle timeline of a log: per model and version, each state with when and why.

Built from the recorded events in one pass (the log is the source of truth for what
happened; replay's verifier says whether it can be trusted, and supplies each
transition's cause). A version may live several times: aspired again after it ended, or
once per server run. Each life starts when the manager created its machine (the
aspired-versions fact that first named it) and is a list of state spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyserving.engine.events import (
    AspiredVersions,
    Event,
    LabelMoved,
    LoadFailed,
    LoadSucceeded,
    PromotionVerdict,
    ServerStarted,
    Skimmed,
    Transition,
)
from pyserving.engine.servable_id import ServableId
from pyserving.statemachines.servable_version import State

SETTLED = frozenset({State.END.value, State.ERROR.value})


@dataclass(frozen=True)
class Cause:
    """The recorded fact whose dispatch made the manager decide a transition."""

    seq: int
    kind: str


@dataclass(frozen=True)
class Point:
    """A moment in the log: a sequence number, or a time (seconds since the epoch)."""

    seq: int | None = None
    time: float | None = None

    def after(self, seq: int, time: float) -> bool:
        """True when this moment is strictly after the event (seq, time)."""
        return (self.seq > seq) if self.seq is not None else (self.time or 0.0) > time

    def not_after(self, seq: int, time: float) -> bool:
        """True when the event (seq, time) happened at or before this moment."""
        return (seq <= self.seq) if self.seq is not None else time <= (self.time or 0.0)


@dataclass
class StateSpan:
    state: str
    since_seq: int
    since_time: float
    trigger: str = ""
    reason: str = ""
    cause: Cause | None = None
    until_seq: int | None = None
    until_time: float | None = None

    def duration_s(self, end_time: float) -> float:
        return (self.until_time if self.until_time is not None else end_time) - self.since_time

    def to_dict(self, end_time: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "since_seq": self.since_seq,
            "since_time": self.since_time,
            "until_seq": self.until_seq,
            "until_time": self.until_time,
            "duration_s": round(self.duration_s(end_time), 6),
            "trigger": self.trigger,
            "reason": self.reason,
            "cause": {"seq": self.cause.seq, "kind": self.cause.kind} if self.cause else None,
        }


@dataclass(frozen=True)
class LoadError:
    seq: int
    time: float
    attempt: int
    will_retry: bool
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "attempt": self.attempt,
            "will_retry": self.will_retry,
            "error": self.error,
        }


@dataclass
class VersionLife:
    """One machine of one version, from its creation to its end (or the log's)."""

    model: str
    version: int
    run: int  # index of the server run (0 = before any header)
    spans: list[StateSpan] = field(default_factory=list)
    load_errors: list[LoadError] = field(default_factory=list)
    fingerprint: str = ""  # its load_succeeded's: which model bytes it served

    @property
    def state(self) -> str:
        return self.spans[-1].state

    def state_at(self, point: Point) -> str | None:
        found = None
        for span in self.spans:
            if point.not_after(span.since_seq, span.since_time):
                found = span.state
            else:
                break
        return found


@dataclass(frozen=True)
class Served:
    """A version was available (could answer requests) over this interval."""

    model: str
    version: int
    since_seq: int
    since_time: float
    until_seq: int | None
    until_time: float | None


@dataclass(frozen=True)
class LabelMove:
    """A label resolved to `version` (None: removed) from this moment of run `run`."""

    model: str
    label: str
    version: int | None
    seq: int
    time: float
    run: int


@dataclass(frozen=True)
class ServingAt:
    """What a request got at a moment: `name` is "latest" or "label <name>"."""

    model: str
    name: str
    version: int
    fingerprint: str


@dataclass(frozen=True)
class RunBoundary:
    header_seq: int
    time: float


class TimelineBuilder:
    def __init__(self) -> None:
        self.lives: list[VersionLife] = []
        self.runs: list[RunBoundary] = []
        self.label_moves: list[LabelMove] = []
        self.verdicts: list[PromotionVerdict] = []  # promotion gates' verdicts, in log order
        self._current: dict[ServableId, VersionLife] = {}
        self.last_seq = 0
        self.last_time = 0.0
        self.first_time: float | None = None

    def skim(self, records: Skimmed) -> None:
        """Records with no part in the lifecycle (BatchRuns): they only move the clock."""
        self.last_seq, self.last_time = records.seq, records.time
        if self.first_time is None:
            self.first_time = records.first_time

    def add(self, event: Event, cause: Cause | None = None) -> None:
        self.last_seq, self.last_time = event.seq, event.time
        if self.first_time is None:
            self.first_time = event.time
        if isinstance(event, Transition):
            self._transition(event, cause)
        elif isinstance(event, AspiredVersions):
            for wanted in event.versions:
                self._life_for(event.model, wanted.version, event.seq, event.time, event.kind)
        elif isinstance(event, LoadSucceeded):
            life = self._current.get(event.servable_id)
            if life is not None:
                life.fingerprint = event.fingerprint
        elif isinstance(event, LabelMoved):
            self.label_moves.append(
                LabelMove(
                    event.model, event.label, event.version, event.seq, event.time, len(self.runs)
                )
            )
        elif isinstance(event, PromotionVerdict):
            self.verdicts.append(event)
        elif isinstance(event, LoadFailed):
            life = self._current.get(event.servable_id)
            if life is not None:
                life.load_errors.append(
                    LoadError(event.seq, event.time, event.attempt, event.will_retry, event.error)
                )
        elif isinstance(event, ServerStarted):
            self._close_open_spans(event.seq, event.time)
            self.runs.append(RunBoundary(event.seq, event.time))
            self._current.clear()

    def _life_for(self, model: str, version: int, seq: int, time: float, kind: str) -> VersionLife:
        """The version's live machine, or a new one (as the manager creates it)."""
        life = self._current.get(ServableId(model, version))
        if life is None or life.state == State.END.value:
            life = self._new_life(model, version, seq, time, Cause(seq, kind))
        return life

    def _new_life(
        self, model: str, version: int, seq: int, time: float, cause: Cause | None = None
    ) -> VersionLife:
        life = VersionLife(model, version, len(self.runs))
        life.spans.append(StateSpan(State.NEW.value, seq, time, cause=cause))
        self._current[ServableId(model, version)] = life
        self.lives.append(life)
        return life

    def _transition(self, t: Transition, cause: Cause | None) -> None:
        life = self._current.get(t.servable_id)
        if life is None or (t.src == State.NEW.value and life.state != State.NEW.value):
            life = self._new_life(t.model, t.version, t.seq, t.time)
        last = life.spans[-1]
        last.until_seq, last.until_time = t.seq, t.time
        life.spans.append(StateSpan(t.dst, t.seq, t.time, t.trigger, t.reason, cause))

    def _close_open_spans(self, seq: int, time: float) -> None:
        """A new server run: the previous run's machines are gone, whatever their state."""
        for life in self._current.values():
            last = life.spans[-1]
            if last.until_seq is None:
                last.until_seq, last.until_time = seq, time

    def finish(self) -> Timeline:
        return Timeline(
            self.lives, self.runs, self.last_seq, self.last_time, self.label_moves, self.verdicts
        )


@dataclass
class Timeline:
    lives: list[VersionLife]
    runs: list[RunBoundary]
    last_seq: int
    last_time: float
    label_moves: list[LabelMove] = field(default_factory=list)
    verdicts: list[PromotionVerdict] = field(default_factory=list)

    def verdicts_of(self, model: str) -> list[PromotionVerdict]:
        return [v for v in self.verdicts if v.model == model]

    def models(self) -> list[str]:
        return sorted({life.model for life in self.lives})

    def served(self, model: str) -> list[Served]:
        intervals = []
        for life in self.lives:
            if life.model != model:
                continue
            for span in life.spans:
                if span.state == State.AVAILABLE.value:
                    intervals.append(
                        Served(
                            model,
                            life.version,
                            span.since_seq,
                            span.since_time,
                            span.until_seq,
                            span.until_time,
                        )
                    )
        return sorted(intervals, key=lambda s: s.since_seq)

    def left_unsettled(self) -> list[VersionLife]:
        """Lives a later run (a restart) cut short: the server stopped without settling them."""
        return [
            life for life in self.lives if life.run < len(self.runs) and life.state not in SETTLED
        ]

    def unsettled_at_end(self) -> list[VersionLife]:
        """Lives of the last run not settled when the log ends (running, or crashed)."""
        return [
            life for life in self.lives if life.run == len(self.runs) and life.state not in SETTLED
        ]

    def _run_at(self, point: Point) -> int:
        run = 0
        for index, boundary in enumerate(self.runs, start=1):
            if point.not_after(boundary.header_seq, boundary.time):
                run = index
        return run

    def _lives_at(self, point: Point) -> dict[ServableId, tuple[VersionLife, str]]:
        """Each version's life and state at a moment, in the server run live then."""
        run = self._run_at(point)
        found: dict[ServableId, tuple[VersionLife, str]] = {}
        for life in self.lives:
            if life.run != run:
                continue
            state = life.state_at(point)
            if state is not None:
                found[ServableId(life.model, life.version)] = (life, state)
        return dict(sorted(found.items()))

    def state_at(self, point: Point) -> dict[ServableId, str]:
        """Every version's state at a moment, in the server run live at that moment."""
        return {key: state for key, (_, state) in self._lives_at(point).items()}

    def fingerprints_at(self, point: Point) -> dict[ServableId, str]:
        """Every version's fingerprint at a moment ("" before its load, or unrecorded)."""
        return {key: life.fingerprint for key, (life, _) in self._lives_at(point).items()}

    def serving_at(self, point: Point) -> list[ServingAt]:
        """Which version, with which fingerprint, a request got at a moment: per model the
        latest available (a request naming no version) and each label's."""
        lives = self._lives_at(point)
        available: dict[str, list[int]] = {}
        for (model, version), (_, state) in lives.items():
            if state == State.AVAILABLE.value:
                available.setdefault(model, []).append(version)
        labels: dict[tuple[str, str], int | None] = {}
        run = self._run_at(point)
        for move in self.label_moves:
            if move.run == run and point.not_after(move.seq, move.time):
                labels[(move.model, move.label)] = move.version
        latest = [ServableId(model, max(versions)) for model, versions in available.items()]
        found = [ServingAt(s.model, "latest", s.version, lives[s][0].fingerprint) for s in latest]
        for (model, label), pointed in labels.items():
            if pointed is not None and pointed in available.get(model, ()):
                fingerprint = lives[ServableId(model, pointed)][0].fingerprint
                found.append(ServingAt(model, f"label {label}", pointed, fingerprint))
        return sorted(found, key=lambda s: (s.model, s.name != "latest", s.name))
