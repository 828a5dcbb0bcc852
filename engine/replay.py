"""Replay: re-decide every recorded lifecycle transition with a fresh manager, and compare.

Why the comparison is one flat sequence: a fact (aspired versions, a load result) is
stamped when published, from whichever thread publishes it, but the manager reacts to
it only when the bus dispatches it, on the bus's one thread, in sequence order. The
transitions it fires are stamped then, so another thread's fact may be stamped between
a fact and the transitions it caused. Transitions, though, are published only from that
dispatch, fact by fact, in sequence order. So feeding the recorded facts to a fresh
`Manager(execute=False)` in sequence order yields its transitions in exactly the order
the log recorded them, whatever the interleaving with facts: the recorded transitions
(in log order) must equal the re-decided ones (in the order they were decided). Each
re-decided transition also names the fact whose dispatch produced it: its explanation.

A log may hold several server runs; each `ServerStarted` header begins a fresh manager
built from the flags it records (policy, retries). A run that ends without a
`ServerStopped` footer crashed: decisions it made but did not record are reported, not
held against it. Events before the first header (its file rotated away) are shown but
cannot be verified.

Labels are verified the same way. The live manager's serving-map writer decides each
LabelMoved while dispatching a fact (a VersionLabelsSet, or the load or unload that
makes a version available or takes it away); the replaying manager decides them again,
on a serving map replay fills as the re-decided transitions make versions available,
and its moves are compared with the recorded LabelMoved ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from pyserving.engine.events import (
    Event,
    FrontendExited,
    FrontendStarted,
    Head,
    LabelMoved,
    ServerStarted,
    ServerStopped,
    Skimmed,
    Transition,
)
from pyserving.engine.manager import LoadAttempts, Manager
from pyserving.engine.policy import POLICIES
from pyserving.engine.servable_id import ServableId
from pyserving.engine.servable_map import ServableHandle
from pyserving.engine.timeline import Cause, Timeline, TimelineBuilder
from pyserving.statemachines.servable_version import TRANSITIONS, State

log = structlog.get_logger("pyserving.replay")

LEGAL_MOVES = frozenset((t["source"], t["trigger"], t["dest"]) for t in TRANSITIONS)
# Facts of these kinds do not reach the manager's decisions: skipping them is only speed.
NOT_FOR_THE_MANAGER = frozenset(
    {"transition", "server_started", "batch_run", "label_moved", "promotion_requested"}
    | {"frontend_started", "frontend_exited"}  # processes, beside the lifecycle
)
# Kinds replay needs only the place of (seq, time): read them as `Skimmed`, not decoded.
SKIMMED = frozenset({"batch_run"})
CONFIG_RELOADED = "config_reloaded"
_AVAILABLE = State.AVAILABLE.value
_NOTHING: Any = None  # replay's serving map says which versions serve, not what they run


@dataclass
class _Serving:
    versions: dict[int, ServableHandle] = field(default_factory=dict)


class ReplayServingMap:
    """The part of a ServableMap the manager's map writer uses, without the live map's
    copy-on-write (O(models) a write, so that readers need no lock): replay has no
    readers, and a log of thousands of models would make it quadratic."""

    def __init__(self) -> None:
        self.snapshot: dict[str, _Serving] = {}
        self._labels: dict[str, dict[str, int]] = {}

    def add(self, handle: ServableHandle) -> None:
        self.snapshot.setdefault(handle.model, _Serving()).versions[handle.version] = handle

    def remove(self, model: str, version: int) -> ServableHandle | None:
        entry = self.snapshot.get(model)
        if entry is None:
            return None
        handle = entry.versions.pop(version, None)
        if not entry.versions:
            del self.snapshot[model]
        return handle

    def labels(self, model: str) -> Mapping[str, int]:
        return self._labels.get(model, {})

    def set_labels(self, model: str, labels: Mapping[str, int]) -> None:
        self._labels[model] = dict(labels)


class ReplayError(Exception):
    """The log cannot be replayed at all (not a divergence): the message says why."""


@dataclass(frozen=True)
class Decision:
    """A transition the fresh manager decided, and why."""

    transition: Transition
    cause: Cause


@dataclass(frozen=True)
class LabelDecision:
    """A label move the replaying manager decided, and why."""

    moved: LabelMoved
    cause: Cause


@dataclass(frozen=True)
class Divergence:
    """The first point where the log and the re-decided lifecycle disagree."""

    seq: int
    problem: str  # out_of_order | missing | illegal | mismatch | unexplained | unrecorded | ungated
    message: str
    expected: Decision | None = None
    recorded: Transition | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "problem": self.problem,
            "message": self.message,
            "expected": describe_decision(self.expected) if self.expected else None,
            "recorded": describe_transition(self.recorded) if self.recorded else None,
        }


@dataclass
class Run:
    """One server run: from its `ServerStarted` header to the next header or the log's end."""

    header_seq: int
    started: float
    pyserving_version: str
    policy: str
    last_seq: int = 0
    last_time: float = 0.0
    clean_stop: bool = False
    verified_transitions: int = 0
    batch_runs: int = 0
    verified_label_moves: int = 0
    unrecorded: list[Decision] = field(default_factory=list)
    unrecorded_label_moves: list[LabelDecision] = field(default_factory=list)
    manager_errors: list[str] = field(default_factory=list)
    config_reloads: list[int] = field(default_factory=list)
    frontends: list[str] = field(default_factory=list)  # front-end starts and exits, in order

    def to_dict(self) -> dict[str, Any]:
        return {
            "header_seq": self.header_seq,
            "started": self.started,
            "pyserving_version": self.pyserving_version,
            "policy": self.policy,
            "last_seq": self.last_seq,
            "clean_stop": self.clean_stop,
            "verified_transitions": self.verified_transitions,
            "batch_runs": self.batch_runs,
            "verified_label_moves": self.verified_label_moves,
            "unrecorded_decisions": [describe_decision(d) for d in self.unrecorded],
            "unrecorded_label_moves": [
                describe_label_decision(d) for d in self.unrecorded_label_moves
            ],
            "manager_errors": self.manager_errors,
            "config_reloads": self.config_reloads,
            "frontends": self.frontends,
        }


def describe_transition(t: Transition) -> str:
    return f"{t.model} v{t.version}: {t.src} -> {t.dst} ({t.trigger})"


def describe_frontend(e: FrontendStarted | FrontendExited) -> str:
    """One front-end process fact as replay prints it."""
    who = f"seq {e.seq}: front-end {e.worker} (pid {e.pid})"
    if isinstance(e, FrontendStarted):
        return f"{who} started" + (f", restart {e.restarts}" if e.restarts else "")
    how = f"killed by {e.signal}" if e.signal else f"exited with code {e.exit_code}"
    if e.unresponsive:
        how = f"stopped answering; the engine {how.replace('killed by', 'killed it with')}"
    return f"{who} {how}" + ("; the engine starts it again" if e.restarting else "")


def describe_decision(d: Decision) -> str:
    return f"{describe_transition(d.transition)} after #{d.cause.seq} {d.cause.kind}"


def describe_label_move(m: LabelMoved) -> str:
    return f"{m.model} label {m.label!r}: {m.previous} -> {m.version}"


def describe_label_decision(d: LabelDecision) -> str:
    return f"{describe_label_move(d.moved)} after #{d.cause.seq} {d.cause.kind}"


def manager_for_run(header: ServerStarted, publish: Callable[[Event], object]) -> Manager:
    """A fresh manager deciding as the recorded server's did: same policy, same retries."""
    flags = header.flags
    policy_name = str(flags.get("aspired_version_policy", "availability"))
    if policy_name not in POLICIES:
        raise ReplayError(
            f"the run starting at seq {header.seq} used aspired_version_policy={policy_name!r}, "
            f"which this pyserving does not know ({', '.join(POLICIES)}): replay it with the "
            f"pyserving that wrote it ({header.pyserving_version})"
        )
    retry = LoadAttempts(
        max_num_load_retries=int(flags.get("max_num_load_retries", 5)),
        load_retry_interval_s=float(flags.get("load_retry_interval_micros", 60_000_000)) / 1e6,
    )
    return Manager(
        publish=publish,
        loader_for=None,
        servable_map=ReplayServingMap(),
        policy=POLICIES[policy_name](),
        retry=retry,
        execute=False,
        allow_unavailable_labels=bool(flags.get("allow_version_labels_for_unavailable_models")),
    )


class Verifier:
    """Consumes the log's events in order; stops judging at the first divergence."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.divergence: Divergence | None = None
        self.unverified_events = 0  # before the first header
        self.events = 0
        self._last_seq: int | None = None
        self._run: Run | None = None
        self._manager: Manager | None = None
        self._pending: deque[Decision] = deque()
        self._label_pending: deque[LabelDecision] = deque()
        self._cause = Cause(0, "")
        self._label_cause = Cause(0, "")
        self._recorded_state: dict[ServableId, str] = {}
        # The cause of the transition just fed (None when it could not be verified).
        self.last_explanation: Cause | None = None

    def skim(self, records: Skimmed) -> None:
        """Records that cannot change a decision (BatchRuns): only their place counts.
        Their sequence numbers are consecutive (the reader makes them so), so only the
        first is checked against what came before."""
        self.events += records.count
        self.last_explanation = None
        if self.divergence is None:
            last = self._last_seq
            if last is not None and records.first_seq == last + 1:
                self._last_seq = records.seq
            else:
                self._check_order(Head(records.first_seq, records.first_time, records.kind))
                self._last_seq = max(self._last_seq or 0, records.seq)
        run = self._run
        if run is None:
            self.unverified_events += records.count
            return
        run.last_seq, run.last_time = records.seq, records.time
        run.batch_runs += records.count

    def feed(self, event: Event) -> None:
        if event.kind in SKIMMED:
            self.skim(Skimmed(event.kind, event.seq, event.time, event.seq, event.time))
            return
        self.events += 1
        self.last_explanation = None
        if self.divergence is None:
            self._check_order(event)
        if isinstance(event, ServerStarted):
            self._end_run()
            self._start_run(event)
            return
        run = self._run
        if run is None:
            self.unverified_events += 1
            return
        run.last_seq, run.last_time = event.seq, event.time
        if self.divergence is not None:
            return
        if isinstance(event, Transition):
            self._check_transition(event, run)
        elif isinstance(event, FrontendStarted | FrontendExited):
            run.frontends.append(describe_frontend(event))
        elif isinstance(event, LabelMoved):
            self._check_label_moved(event, run)
        elif event.kind not in NOT_FOR_THE_MANAGER:
            if isinstance(event, ServerStopped):
                run.clean_stop = True
            elif event.kind == CONFIG_RELOADED:
                run.config_reloads.append(event.seq)
            self._drive(event, run)

    def finish(self) -> None:
        self._end_run()

    @property
    def verified(self) -> bool:
        return self.divergence is None

    # ----------------------------------------------------------------- checks
    def _check_order(self, event: Event | Head) -> None:
        last = self._last_seq
        self._last_seq = event.seq if last is None else max(last, event.seq)
        if last is None:
            return
        if event.seq <= last:
            self._diverge(
                event.seq,
                "out_of_order",
                f"seq {event.seq} ({event.kind}) comes after seq {last}: events are out of order",
            )
        elif event.seq > last + 1 and self._run is not None:
            missing = f"{last + 1}" if event.seq == last + 2 else f"{last + 1}..{event.seq - 1}"
            self._diverge(
                last + 1,
                "missing",
                f"seq {missing} is not where it belongs: the log jumps from seq {last} to "
                f"seq {event.seq} (removed, or out of order)",
                expected=self._pending[0] if self._pending else None,
            )

    def _check_transition(self, recorded: Transition, run: Run) -> bool:
        """True when `recorded` is the manager's next decision."""
        key = recorded.servable_id
        current = self._recorded_state.get(key, State.NEW.value)
        if current == State.END.value and recorded.src == State.NEW.value:
            current = State.NEW.value  # an ended version aspired again: a fresh machine
        expected = self._pending[0] if self._pending else None
        if (recorded.src, recorded.trigger, recorded.dst) not in LEGAL_MOVES:
            self._diverge(
                recorded.seq,
                "illegal",
                f"seq {recorded.seq}: {recorded.src} -> {recorded.dst} by {recorded.trigger!r} "
                "is not a move of the version state machine",
                expected,
                recorded,
            )
            return False
        if recorded.src != current:
            self._diverge(
                recorded.seq,
                "illegal",
                f"seq {recorded.seq}: {recorded.model} v{recorded.version} moves from "
                f"{recorded.src}, but the log left it in {current}",
                expected,
                recorded,
            )
            return False
        if expected is None:
            self._diverge(
                recorded.seq,
                "unexplained",
                f"seq {recorded.seq}: no recorded fact makes the manager decide this transition",
                None,
                recorded,
            )
            return False
        if _decision_key(expected.transition) != _decision_key(recorded):
            self._diverge(
                recorded.seq,
                "mismatch",
                f"seq {recorded.seq}: the manager decides "
                f"{describe_decision(expected)}, the log records {describe_transition(recorded)}",
                expected,
                recorded,
            )
            return False
        self._pending.popleft()
        self._recorded_state[key] = recorded.dst
        run.verified_transitions += 1
        self.last_explanation = expected.cause
        return True

    def _check_label_moved(self, recorded: LabelMoved, run: Run) -> None:
        expected = self._label_pending[0] if self._label_pending else None
        if self._ungated_move(recorded, expected):
            self._diverge(
                recorded.seq,
                "ungated",
                f"seq {recorded.seq}: {describe_label_move(recorded)} without a passing "
                "promotion verdict, while promotion gates were configured for that label",
            )
            return
        if expected is None:
            self._diverge(
                recorded.seq,
                "unexplained",
                f"seq {recorded.seq}: no recorded config or transition makes the label keeper "
                f"decide {describe_label_move(recorded)}",
            )
            return
        if _label_key(expected.moved) != _label_key(recorded):
            self._diverge(
                recorded.seq,
                "mismatch",
                f"seq {recorded.seq}: the label keeper decides "
                f"{describe_label_decision(expected)}, "
                f"the log records {describe_label_move(recorded)}",
            )
            return
        self._label_pending.popleft()
        run.verified_label_moves += 1
        self.last_explanation = expected.cause

    def _ungated_move(self, recorded: LabelMoved, expected: LabelDecision | None) -> bool:
        """A gated label moved from a version to another where the replaying label keeper
        (which moves such a label only on a recorded passing verdict) does not."""
        if self._manager is None or recorded.previous is None or recorded.version is None:
            return False
        if recorded.label not in self._manager.serving.gated(recorded.model):
            return False
        return expected is None or _label_key(expected.moved) != _label_key(recorded)

    def _diverge(
        self,
        seq: int,
        problem: str,
        message: str,
        expected: Decision | None = None,
        recorded: Transition | None = None,
    ) -> None:
        if self.divergence is None:
            self.divergence = Divergence(seq, problem, message, expected, recorded)

    # ------------------------------------------------------------ the manager
    def _drive(self, fact: Event, run: Run) -> None:
        assert self._manager is not None
        self._cause = Cause(fact.seq, fact.kind)
        try:
            self._manager.handle(fact)
        except Exception as exc:  # the live bus logs a raising subscriber and goes on: so do we
            run.manager_errors.append(f"#{fact.seq} {fact.kind}: {type(exc).__name__}: {exc}")

    def _decided(self, event: Event) -> None:
        """The manager decided a transition or a label move. A version it makes available
        joins the serving map, as the live manager's handle does right after the same
        transition (nothing is loaded here, so the manager has no handle to add)."""
        if isinstance(event, Transition):
            self._pending.append(Decision(event, self._cause))
            if event.dst == _AVAILABLE and self._manager is not None:
                self._manager.serving.add(ServableHandle(event.model, event.version, _NOTHING))
        elif isinstance(event, LabelMoved):
            self._label_pending.append(LabelDecision(event, self._cause))

    def _start_run(self, header: ServerStarted) -> None:
        flags = header.flags
        self._run = Run(
            header_seq=header.seq,
            started=header.time,
            pyserving_version=header.pyserving_version,
            policy=str(flags.get("aspired_version_policy", "availability")),
            last_seq=header.seq,
            last_time=header.time,
        )
        self.runs.append(self._run)
        self._manager = manager_for_run(header, self._decided)
        self._pending.clear()
        self._label_pending.clear()
        self._recorded_state.clear()

    def _end_run(self) -> None:
        run = self._run
        if run is None:
            return
        if self.divergence is None and not run.clean_stop:
            run.unrecorded = list(self._pending)  # a crash may have lost them: reported
            run.unrecorded_label_moves = list(self._label_pending)
        elif self.divergence is None:
            owed = None
            if self._pending:
                owed = f"the manager decides {describe_decision(self._pending[0])}"
            elif self._label_pending:
                owed = f"the label keeper decides {describe_label_decision(self._label_pending[0])}"
            if owed is not None:
                self._diverge(
                    run.last_seq + 1,
                    "unrecorded",
                    f"{owed}, but the run that ends cleanly at seq {run.last_seq} never records it",
                    expected=self._pending[0] if self._pending else None,
                )
        self._pending.clear()
        self._label_pending.clear()
        if self._manager is not None:
            self._manager.close()
        self._manager = None
        self._run = None


def _decision_key(t: Transition) -> tuple[str, int, str, str, str]:
    return (t.model, t.version, t.src, t.dst, t.trigger)


def _label_key(m: LabelMoved) -> tuple[str, str, int | None, int | None]:
    return (m.model, m.label, m.version, m.previous)


@dataclass(frozen=True)
class ReplayResult:
    verifier: Verifier
    timeline: Timeline

    @property
    def verified(self) -> bool:
        return self.verifier.verified


def replay(events: Iterable[Event | Skimmed]) -> ReplayResult:
    """Verify `events` (in log order; `SKIMMED` kinds may come `Skimmed`) and build their
    timeline, in one pass."""
    verifier = Verifier()
    builder = TimelineBuilder()
    skim, skim_timeline = verifier.skim, builder.skim  # most of a log: keep them cheap
    for event in events:
        if isinstance(event, Skimmed):
            skim(event)
            skim_timeline(event)
            continue
        verifier.feed(event)
        builder.add(event, verifier.last_explanation)
    verifier.finish()
    return ReplayResult(verifier, builder.finish())
