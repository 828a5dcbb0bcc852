"""The one writer of the serving map: versions as they become available or leave, and labels.

The manager calls it on the bus's dispatch thread, in the same step as the transition
that makes a version available (`add`) or starts its unload (`remove`), so the map never
lags the machines: a version leaves the map *before* its unload waits for in-flight
requests, and a label is re-pointed in that same step (engine/labels.py says where).
Configured labels (`VersionLabelsSet`) come through the manager too, so every write to
the map happens on one thread, in event-log order. Every label move is published as a
`LabelMoved` record.

A gated label (promotion gates, engine/promotion.py) does not follow its config to a new
version at once: while the version it points at serves, it stays there, a
`PromotionRequested` record asks for a verdict, and it moves only on a passing
`PromotionVerdict` for exactly that move. A failed verdict leaves it where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import structlog

from pyserving.engine.events import Event, LabelMoved, PromotionRequested, PromotionVerdict
from pyserving.engine.labels import effective_labels
from pyserving.engine.servable_map import ServableHandle, WritableServableMap

log = structlog.get_logger("pyserving.labels")


class ServingMapWriter:
    def __init__(
        self,
        servable_map: WritableServableMap,
        publish: Callable[[Event], object],
        allow_unavailable: bool = False,
    ) -> None:
        self._map = servable_map
        self._publish = publish
        self._allow_unavailable = allow_unavailable  # --allow_version_labels_for_unavailable_models
        self._desired: dict[str, dict[str, int]] = {}
        self._gated: dict[str, frozenset[str]] = {}  # model → labels that move on a verdict
        self._asked: dict[tuple[str, str], int] = {}  # (model, label) → version judged or being
        self._approved: dict[tuple[str, str], int] = {}  # (model, label) → version it may move to
        # Called with (label, from handle, to handle) when a gated move needs a verdict.
        self.on_promotion: Callable[[str, ServableHandle, ServableHandle], object] | None = None

    def set_gates(self, gates: Mapping[str, Iterable[str]]) -> None:
        """Which labels of which models move only on a passing verdict, from now on."""
        self._gated = {model: frozenset(labels) for model, labels in gates.items()}

    def gated(self, model: str) -> frozenset[str]:
        return self._gated.get(model, frozenset())

    def verdict(self, event: PromotionVerdict) -> None:
        """A gate's verdict: the label moves if it passed and is still wanted there."""
        key = (event.model, event.label)
        if self._asked.get(key) != event.to_version:
            log.info("promotion_verdict_stale", model=event.model, label=event.label)
            return
        if event.passed:
            self._approved[key] = event.to_version
        self._update_labels(event.model, f"promotion verdict #{event.seq}")

    def add(self, handle: ServableHandle) -> None:
        """A version became available: serve it, and move the labels waiting for it."""
        self._map.add(handle)
        self._update_labels(handle.model, f"version {handle.version} available")

    def remove(self, model: str, version: int) -> ServableHandle | None:
        """A version starts unloading: stop serving it; its handle, to quiesce and unload."""
        handle = self._map.remove(model, version)
        self._update_labels(model, f"version {version} unloading")
        return handle

    def set_labels(self, model: str, labels: Mapping[str, int]) -> None:
        """The configured labels of `model` (label → version) from now on."""
        before = self._desired.get(model, {})
        for label in self.gated(model):
            if before.get(label) != labels.get(label):  # a new wish: judged afresh
                self._asked.pop((model, label), None)
                self._approved.pop((model, label), None)
        self._desired[model] = dict(labels)
        self._update_labels(model, "configured")
        now = self._map.labels(model)
        available = self._available(model)
        for label, wanted in sorted(labels.items()):
            if wanted not in available:
                log.info(
                    "label_waiting",
                    model=model,
                    label=label,
                    version=wanted,
                    points_at=now.get(label),
                    hint="the label moves when its version is available",
                )

    def desired(self, model: str) -> dict[str, int]:
        """Where the config wants `model`'s labels (they may not point there yet)."""
        return dict(self._desired.get(model, {}))

    def _available(self, model: str) -> set[int]:
        entry = self._map.snapshot.get(model)
        return set(entry.versions) if entry is not None else set()

    def _update_labels(self, model: str, why: str) -> None:
        available = self._available(model)
        current = dict(self._map.labels(model))
        new = effective_labels(
            self._desired.get(model, {}), current, available, self._allow_unavailable
        )
        self._hold_gated(model, current, new, available)
        if new == current:
            return
        self._map.set_labels(model, new)
        for label in sorted(set(new) | set(current)):
            version, previous = new.get(label), current.get(label)
            if version == previous:
                continue
            if version is None:
                reason = f"removed from the config ({why})"
            elif self._approved.get((model, label)) == version:
                reason = f"promotion gates passed ({why})"
            elif version in available:
                reason = f"version {version} available ({why})"
            else:
                reason = f"recorded; resolves once version {version} is available ({why})"
            log.info(
                "label_moved",
                model=model,
                label=label,
                version=version,
                previous=previous,
                reason=reason,
            )
            self._publish(
                LabelMoved(
                    model=model, label=label, version=version, previous=previous, reason=reason
                )
            )

    def _hold_gated(
        self, model: str, current: Mapping[str, int], new: dict[str, int], available: set[int]
    ) -> None:
        """Keep each gated label on the version it serves until a verdict lets it move.

        Only a move between two serving versions can be judged: a label that points
        nowhere yet, or at a version that left, follows its config as ungated labels do.
        """
        for label in self.gated(model):
            now, wanted = current.get(label), new.get(label)
            if now is None or wanted is None or now == wanted or now not in available:
                continue
            key = (model, label)
            if wanted in available and self._approved.get(key) == wanted:
                continue
            new[label] = now
            if wanted not in available or self._asked.get(key) == wanted:
                continue  # not loaded yet (asked once it is), or judged / being judged
            self._asked[key] = wanted
            log.info(
                "promotion_requested",
                model=model,
                label=label,
                from_version=now,
                to_version=wanted,
                hint="the label stays until the promotion gates pass",
            )
            self._publish(
                PromotionRequested(model=model, label=label, from_version=now, to_version=wanted)
            )
            if self.on_promotion is not None:
                entry = self._map.snapshot[model]
                self.on_promotion(label, entry.versions[now], entry.versions[wanted])
