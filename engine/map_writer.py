"""The one writer of the serving map: versions as they become available or leave, and labels.

The manager calls it on the bus's dispatch thread, in the same step as the transition
that makes a version available (`add`) or starts its unload (`remove`), so the map never
lags the machines: a version leaves the map *before* its unload waits for in-flight
requests, and a label is re-pointed in that same step (engine/labels.py says where).
Configured labels (`VersionLabelsSet`) come through the manager too, so every write to
the map happens on one thread, in event-log order. Every label move is published as a
`LabelMoved` record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from pyserving.engine.events import Event, LabelMoved
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
        if new == current:
            return
        self._map.set_labels(model, new)
        for label in sorted(set(new) | set(current)):
            version, previous = new.get(label), current.get(label)
            if version == previous:
                continue
            if version is None:
                reason = f"removed from the config ({why})"
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
