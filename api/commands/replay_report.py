"""Render a replay for people (a table) or tools (JSON), with the operator's filters applied.

Filters only narrow what is shown: verification always covers the whole log, since a
decision can only be re-made from everything that came before it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyserving.engine.replay import ReplayResult, describe_decision, describe_transition
from pyserving.engine.timeline import Point, StateSpan, Timeline, VersionLife


class FilterError(ValueError):
    """A filter the operator gave cannot be understood; the message says what to write."""


def parse_point(text: str) -> Point:
    """`123` or `#123` is a sequence number; `1714531920.5` epoch seconds; else ISO 8601.

    An ISO time without an offset is UTC, as the report prints every time in UTC.
    """
    value = text.strip()
    if re.fullmatch(r"#?\d+", value):
        return Point(seq=int(value.lstrip("#")))
    if re.fullmatch(r"\d+\.\d*", value):
        return Point(time=float(value))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(
            f"cannot read {text!r} as a moment: give a sequence number (123), epoch seconds "
            "(1714531920.5) or an ISO 8601 time in UTC (2024-05-01T03:12:00 or ...+02:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Point(time=moment.timestamp())


def iso(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Filters:
    model: str | None = None
    since: Point | None = None
    until: Point | None = None
    state_at: Point | None = None

    def shows_span(self, span: StateSpan) -> bool:
        if self.until is not None and not self.until.not_after(span.since_seq, span.since_time):
            return False
        if self.since is not None and span.until_seq is not None:
            assert span.until_time is not None
            if self.since.after(span.until_seq, span.until_time):
                return False
        return True

    def shows_moment(self, seq: int, time: float) -> bool:
        if self.since is not None and self.since.after(seq, time):
            return False
        return not (self.until is not None and not self.until.not_after(seq, time))


@dataclass(frozen=True)
class ReplaySource:
    files: list[Path]
    skipped_lines: list[tuple[Path, int, str]]


def _selected_lives(
    timeline: Timeline, filters: Filters
) -> list[tuple[VersionLife, list[StateSpan]]]:
    chosen = []
    for life in timeline.lives:
        if filters.model is not None and life.model != filters.model:
            continue
        spans = [s for s in life.spans if filters.shows_span(s)]
        if spans:
            chosen.append((life, spans))
    return sorted(chosen, key=lambda c: (c[0].model, c[0].version, c[0].run, c[1][0].since_seq))


def to_json_dict(result: ReplayResult, source: ReplaySource, filters: Filters) -> dict[str, Any]:
    timeline = result.timeline
    verifier = result.verifier
    end = timeline.last_time
    models: dict[str, Any] = {}
    for life, spans in _selected_lives(timeline, filters):
        entry = models.setdefault(life.model, {"versions": [], "served": []})
        entry["versions"].append(
            {
                "version": life.version,
                "run": life.run,
                "final_state": life.state,
                "states": [s.to_dict(end) for s in spans],
                "load_errors": [
                    e.to_dict() for e in life.load_errors if filters.shows_moment(e.seq, e.time)
                ],
            }
        )
    for verdict in timeline.verdicts:
        if filters.model in (None, verdict.model) and filters.shows_moment(
            verdict.seq, verdict.time
        ):
            models.setdefault(verdict.model, {"versions": [], "served": []})
    for model, entry in models.items():
        entry["promotion_verdicts"] = [
            v.to_dict() for v in timeline.verdicts_of(model) if filters.shows_moment(v.seq, v.time)
        ]
        entry["served"] = [
            {
                "version": s.version,
                "since_seq": s.since_seq,
                "since_time": s.since_time,
                "until_seq": s.until_seq,
                "until_time": s.until_time,
                "duration_s": round((s.until_time or end) - s.since_time, 6),
            }
            for s in timeline.served(model)
            if filters.shows_span(
                StateSpan(
                    "available", s.since_seq, s.since_time, "", "", None, s.until_seq, s.until_time
                )
            )
        ]
    report: dict[str, Any] = {
        "files": [str(f) for f in source.files],
        "events": verifier.events,
        "last_seq": timeline.last_seq,
        "verified": result.verified,
        "divergence": verifier.divergence.to_dict() if verifier.divergence else None,
        "unverified_events": verifier.unverified_events,
        "runs": [run.to_dict() for run in verifier.runs],
        "left_unsettled_by_restart": [_life_ref(life) for life in timeline.left_unsettled()],
        "unsettled_at_end": [_life_ref(life) for life in timeline.unsettled_at_end()],
        "skipped_lines": [
            {"file": str(path), "line": line, "error": error}
            for path, line, error in source.skipped_lines
        ],
        "models": models,
    }
    if filters.state_at is not None:
        point = filters.state_at
        fingerprints = timeline.fingerprints_at(point)
        report["state_at"] = [
            {
                "model": servable.model,
                "version": servable.version,
                "state": state,
                "fingerprint": fingerprints[servable],
            }
            for servable, state in timeline.state_at(point).items()
            if filters.model is None or servable.model == filters.model
        ]
        report["serving_at"] = [
            {"model": s.model, "as": s.name, "version": s.version, "fingerprint": s.fingerprint}
            for s in timeline.serving_at(point)
            if filters.model is None or s.model == filters.model
        ]
    return report


def _life_ref(life: VersionLife) -> dict[str, Any]:
    return {"model": life.model, "version": life.version, "run": life.run, "state": life.state}


def render_json(result: ReplayResult, source: ReplaySource, filters: Filters) -> str:
    return json.dumps(to_json_dict(result, source, filters), indent=2)


def render_table(result: ReplayResult, source: ReplaySource, filters: Filters) -> str:
    timeline = result.timeline
    verifier = result.verifier
    out: list[str] = []
    out.append(
        f"{len(source.files)} file(s), {verifier.events} events up to seq {timeline.last_seq}, "
        f"{len(verifier.runs)} server run(s)"
    )
    for path, line, error in source.skipped_lines:
        out.append(f"skipped {path}:{line}: undecodable (a torn write?): {error}")
    out.extend(_verdict_lines(result))
    out.append("")
    for index, run in enumerate(verifier.runs, start=1):
        ending = (
            f"stopped cleanly at seq {run.last_seq}"
            if run.clean_stop
            else f"no clean stop recorded (crashed, or still running) after seq {run.last_seq}"
        )
        out.append(
            f"run {index}: started {iso(run.started)} (seq {run.header_seq}), pyserving "
            f"{run.pyserving_version}, {run.policy} policy; {ending}"
        )
        for decision in run.unrecorded:
            out.append(f"  decided, never recorded: {describe_decision(decision)}")
        for error in run.manager_errors:
            out.append(f"  the manager refused a fact (as it did live): {error}")
        if run.config_reloads:
            out.append(f"  config reloads at seq {', '.join(map(str, run.config_reloads))}")
        out.extend(f"  {fact}" for fact in run.frontends)
    for life in timeline.left_unsettled():
        out.append(
            f"{life.model} v{life.version} was left in {life.state} when run {life.run} ended "
            "without settling it (the server restarted)"
        )
    if filters.state_at is not None:
        out.append("")
        out.extend(_state_at_lines(timeline, filters))
        return "\n".join(out) + "\n"
    current_model = None
    for life, spans in _selected_lives(timeline, filters):
        if life.model != current_model:
            if current_model is not None:
                out.extend(_served_lines(timeline, current_model, filters))
            current_model = life.model
            out.append("")
            out.append(f"model {life.model}")
        out.extend(_life_lines(life, spans, timeline.last_time, filters))
    if current_model is not None:
        out.extend(_served_lines(timeline, current_model, filters))
    elif filters.model is not None:
        out.append(f"\nno events of model {filters.model!r} in the selected range")
    out.extend(_verdict_table(timeline, filters))
    return "\n".join(out) + "\n"


def _verdict_lines(result: ReplayResult) -> list[str]:
    verifier = result.verifier
    divergence = verifier.divergence
    if divergence is None:
        verified = sum(run.verified_transitions for run in verifier.runs)
        lines = [
            f"VERIFIED: all {verified} recorded transitions are legal and are exactly what a "
            "fresh manager decides from the recorded facts"
        ]
        if verifier.unverified_events:
            lines.append(
                f"  ({verifier.unverified_events} events before the first server-start header "
                "cannot be verified: their header was rotated away)"
            )
        return lines
    lines = [f"DIVERGENCE at seq {divergence.seq} ({divergence.problem}): {divergence.message}"]
    if divergence.expected is not None:
        lines.append(f"  expected: {describe_decision(divergence.expected)}")
    if divergence.recorded is not None:
        lines.append(f"  recorded: {describe_transition(divergence.recorded)}")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{secs:04.1f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes):02d}m{secs:02.0f}s"


def _life_lines(
    life: VersionLife, spans: list[StateSpan], end: float, filters: Filters
) -> list[str]:
    lines = [f"  version {life.version} (run {life.run}): now {life.state}"]
    lines.append(f"    {'seq':>8}  {'since':24}  {'state':9}  {'for':>10}  {'trigger':15}  why")
    for span in spans:
        lasted = _duration(span.duration_s(end)) + ("+" if span.until_time is None else "")
        if span.state == "end":
            lasted = ""
        why = span.reason
        if span.cause is not None:
            why = f"{why}  [after #{span.cause.seq} {span.cause.kind}]".strip()
        lines.append(
            f"    {span.since_seq:>8}  {iso(span.since_time):24}  {span.state:9}  "
            f"{lasted:>10}  {span.trigger:15}  {why}"
        )
    errors = [e for e in life.load_errors if filters.shows_moment(e.seq, e.time)]
    if errors:
        lines.append("    load errors:")
        for error in errors:
            retry = "will retry" if error.will_retry else "final"
            lines.append(
                f"      #{error.seq} {iso(error.time)} attempt {error.attempt} ({retry}): "
                f"{error.error}"
            )
    return lines


def _served_lines(timeline: Timeline, model: str, filters: Filters) -> list[str]:
    served = [
        s
        for s in timeline.served(model)
        if filters.shows_span(
            StateSpan(
                "available",
                s.since_seq,
                s.since_time,
                until_seq=s.until_seq,
                until_time=s.until_time,
            )
        )
    ]
    if not served:
        return [f"  served: no version of {model} was available"]
    lines = [f"  served ({model}):"]
    for s in served:
        duration = (s.until_time or timeline.last_time) - s.since_time
        lines.append(
            f"    v{s.version}  {iso(s.since_time)} (#{s.since_seq}) -> "
            f"{iso(s.until_time) if s.until_time is not None else 'log end'}"
            f"{f' (#{s.until_seq})' if s.until_seq is not None else ''}  {_duration(duration)}"
        )
    return lines


def _verdict_table(timeline: Timeline, filters: Filters) -> list[str]:
    """Each promotion gate verdict: which move, passed or failed, each gate's figures, why."""
    shown = [
        v
        for v in timeline.verdicts
        if filters.model in (None, v.model) and filters.shows_moment(v.seq, v.time)
    ]
    if not shown:
        return []
    lines = ["", "promotion verdicts:"]
    for v in shown:
        outcome = "PASSED, label moved" if v.passed else "FAILED, label stayed"
        lines.append(
            f"  #{v.seq} {iso(v.time)}  {v.model} label {v.label!r}: v{v.from_version} -> "
            f"v{v.to_version}  {outcome}  ({v.duration_s:.3f}s): {v.reason}"
        )
        for gate in v.gates:
            figures = ", ".join(f"{k}={value:.6g}" for k, value in gate.figures.items())
            mark = "pass" if gate.passed else "FAIL"
            lines.append(f"      {gate.gate:9} {mark}  {figures}")
    return lines


def _state_at_lines(timeline: Timeline, filters: Filters) -> list[str]:
    assert filters.state_at is not None
    point = filters.state_at
    label = f"seq {point.seq}" if point.seq is not None else iso(point.time)
    states = {
        key: state
        for key, state in timeline.state_at(point).items()
        if filters.model is None or key[0] == filters.model
    }
    if not states:
        return [f"state at {label}: no version known at that moment"]
    fingerprints = timeline.fingerprints_at(point)
    lines = [f"state at {label}:", f"  {'model':20}  {'version':>7}  {'state':11}  fingerprint"]
    for servable, state in states.items():
        model, version = servable
        fingerprint = fingerprints[servable] or "-"
        lines.append(f"  {model:20}  {version:>7}  {state:11}  {fingerprint}")
    serving = [s for s in timeline.serving_at(point) if filters.model in (None, s.model)]
    if serving:
        lines.append(f"serving at {label}:")
        lines.append(f"  {'model':20}  {'as':16}  {'version':>7}  fingerprint")
        for s in serving:
            lines.append(f"  {s.model:20}  {s.name:16}  {s.version:>7}  {s.fingerprint or '-'}")
    return lines
