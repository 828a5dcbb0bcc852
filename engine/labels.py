"""Version labels: keep each model's label → version map in the serving map safe to use.

The config says where a label *should* point; this keeper decides where it *does*
point, so moving a label never opens a gap for the clients that name it:

- a label moves to its configured version only once that version is available;
  until then it keeps answering with the version it pointed at, as long as that serves;
- a label whose configured version is not available and that had no serving version
  before is recorded anyway (requests naming it get NOT_FOUND, not INVALID_ARGUMENT)
  and starts resolving the moment the version becomes available;
- with `allow_unavailable` (TF Serving's --allow_version_labels_for_unavailable_models)
  a label moves at once, as TF Serving does.

It runs as a bus subscriber, on the dispatch thread that also runs the manager, so it
sees the serving map exactly as the last transition left it. Every move is published
as a `LabelMoved` record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from pyserving.engine.events import Event, LabelMoved, Transition, VersionLabelsSet
from pyserving.engine.servable_map import ServableMap

log = structlog.get_logger("pyserving.labels")

_AVAILABLE = "available"


def effective_labels(
    desired: Mapping[str, int],
    current: Mapping[str, int],
    available: set[int],
    allow_unavailable: bool = False,
) -> dict[str, int]:
    """Where each configured label points now, given where it pointed and what serves."""
    effective: dict[str, int] = {}
    for label, wanted in desired.items():
        now = current.get(label)
        keep_serving_version = (
            not allow_unavailable
            and wanted not in available
            and now is not None
            and now in available
        )
        effective[label] = now if keep_serving_version and now is not None else wanted
    return effective


class LabelKeeper:
    def __init__(
        self,
        servable_map: ServableMap,
        publish: Callable[[Event], object],
        allow_unavailable: bool = False,
    ) -> None:
        self._map = servable_map
        self._publish = publish
        self._allow_unavailable = allow_unavailable
        self._desired: dict[str, dict[str, int]] = {}

    def handle(self, event: Event) -> None:
        """Bus subscriber: react to configured labels and to versions coming and going."""
        if isinstance(event, VersionLabelsSet):
            self._desired[event.model] = dict(event.labels)
            self._update(event.model, "configured")
            now = self._map.labels(event.model)
            entry = self._map.snapshot.get(event.model)
            available = set(entry.versions) if entry is not None else set()
            for label, wanted in sorted(event.labels.items()):
                if wanted not in available:
                    log.info(
                        "label_waiting",
                        model=event.model,
                        label=label,
                        version=wanted,
                        points_at=now.get(label),
                        hint="the label moves when its version is available",
                    )
        elif isinstance(event, Transition) and _AVAILABLE in (event.src, event.dst):
            self._update(event.model, f"version {event.version} {event.dst}")

    def desired(self, model: str) -> dict[str, int]:
        return dict(self._desired.get(model, {}))

    def _update(self, model: str, why: str) -> None:
        entry = self._map.snapshot.get(model)
        available = set(entry.versions) if entry is not None else set()
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
