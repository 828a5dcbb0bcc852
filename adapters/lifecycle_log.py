"""Bus subscriber that writes each lifecycle event as a structured log line."""

from __future__ import annotations

import structlog

from pyserving.engine.events import (
    AspiredVersions,
    Event,
    LoadFailed,
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
