"""Bus subscriber that writes each lifecycle event as a structured log line."""

from __future__ import annotations

import structlog

from pyserving.engine.events import (
    AspiredVersions,
    Event,
    LoadFailed,
    PromotionVerdict,
    Transition,
    WarmupFinished,
)

log = structlog.get_logger("pyserving.lifecycle")


def log_event(event: Event) -> None:
    if isinstance(event, Transition):
        level = log.error if event.dst == "error" else log.info
        level(
            "version_transition",
            model=event.model,
            version=event.version,
            src=event.src,
            state=event.dst,
            trigger=event.trigger,
            reason=event.reason,
            seq=event.seq,
        )
    elif isinstance(event, LoadFailed):
        log.warning(
            "load_attempt_failed",
            model=event.model,
            version=event.version,
            attempt=event.attempt,
            will_retry=event.will_retry,
            error=event.error,
            seq=event.seq,
        )
    elif isinstance(event, AspiredVersions):
        log.info(
            "aspired_versions",
            model=event.model,
            versions=[v.version for v in event.versions],
            seq=event.seq,
        )
    elif isinstance(event, WarmupFinished):
        (log.error if event.error else log.info)(
            "warmup_finished",
            model=event.model,
            version=event.version,
            records=event.records,
            iterations=event.iterations,
            duration_s=round(event.duration_s, 6),
            error=event.error,
            seq=event.seq,
        )
    elif isinstance(event, PromotionVerdict):
        # Why a label moved or stayed: the reason, and the figures each gate judged.
        (log.info if event.passed else log.warning)(
            "promotion_verdict",
            model=event.model,
            label=event.label,
            from_version=event.from_version,
            to_version=event.to_version,
            verdict="passed" if event.passed else "failed",
            reason=event.reason,
            gates={g.gate: dict(g.figures, passed=g.passed) for g in event.gates},
            duration_s=round(event.duration_s, 6),
            seq=event.seq,
        )
