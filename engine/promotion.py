"""Promotion gates in the server: the judge that runs a gated label's gates on the load pool.

A gated label never moves straight to a new version: the serving map's writer
(engine/map_writer.py) keeps it on the version it serves and asks for a verdict; the
manager hands `PromotionJudge.judge` to its load pool (off the event loop and off the
serving path: requests keep being answered by the old version meanwhile), and the
verdict comes back as a `PromotionVerdict` fact on the bus, on which the label moves
(passed) or stays (failed; the new version still serves by number).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from pyserving.engine.events import PromotionVerdict
from pyserving.engine.promotion_gates import GateConfig, RecordedRequest, run_gates, verdict
from pyserving.engine.servable_map import ServableHandle

log = structlog.get_logger("pyserving.promotion")

RequestsFor = Callable[[GateConfig], Sequence[RecordedRequest]]


class PromotionJudge:
    """The gates of every gated (model, label), and where their recorded requests come from."""

    def __init__(
        self,
        configs: Mapping[tuple[str, str], GateConfig],
        requests_for: RequestsFor,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._configs = dict(configs)
        self._requests_for = requests_for
        self._clock = clock

    def gated(self) -> dict[str, tuple[str, ...]]:
        """model → its gated labels (what `PromotionGatesSet` records)."""
        gates: dict[str, list[str]] = {}
        for model, label in sorted(self._configs):
            gates.setdefault(model, []).append(label)
        return {model: tuple(labels) for model, labels in gates.items()}

    def judge(
        self,
        label: str,
        old: ServableHandle,
        new: ServableHandle,
        stopping: threading.Event | None = None,
    ) -> PromotionVerdict:
        """Run the label's gates on both versions (held, so neither unloads meanwhile);
        `stopping` set (the server stops) ends the gate at its next rest, failed."""
        rest = stopping.wait if stopping is not None else time.sleep
        config = self._configs[(old.model, label)]
        started = self._clock()
        held = [h for h in (old, new) if h.hold()]
        try:
            if len(held) < 2:
                results, passed, reason = (
                    [],
                    False,
                    "a version stopped serving before the gates ran",
                )
            else:
                results = run_gates(
                    config,
                    old.servable,
                    new.servable,
                    lambda: self._requests_for(config),
                    self._clock,
                    rest,
                )
                passed, reason = verdict(results)
        except Exception as exc:  # reading the requests, or a model call, failed: no promotion
            results, passed = [], False
            reason = f"the gates could not run: {type(exc).__name__}: {exc}"
        finally:
            for handle in held:
                handle.release()
        return PromotionVerdict(
            model=old.model,
            label=label,
            from_version=old.version,
            to_version=new.version,
            passed=passed,
            reason=reason,
            gates=tuple(results),
            duration_s=self._clock() - started,
        )
