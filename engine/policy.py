"""Aspired-version policies: given one model's versions, what should happen next.

A policy is a pure function of a snapshot, so the manager, the unit tests and replay all
get the same answer for the same input. The manager applies one action, takes a new
snapshot and asks again until the policy answers None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pyserving.statemachines.servable_version import State


class ActionKind(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"
    CANCEL = "cancel"  # never started loading, and no longer wanted
    RETIRE = "retire"  # failed, and no longer wanted: forget it so it may be aspired again


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    version: int


@dataclass(frozen=True)
class VersionSnapshot:
    version: int
    state: State
    aspired: bool


class AspiredVersionPolicy(Protocol):
    name: str

    def next_action(self, versions: Sequence[VersionSnapshot]) -> Action | None: ...


def _cleanup_action(versions: Sequence[VersionSnapshot]) -> Action | None:
    """Versions that nobody wants and that hold nothing: drop them first, lowest first."""
    for v in sorted(versions, key=lambda v: v.version):
        if not v.aspired and v.state == State.NEW:
            return Action(ActionKind.CANCEL, v.version)
        if not v.aspired and v.state == State.ERROR:
            return Action(ActionKind.RETIRE, v.version)
    return None


def _unaspired_available(versions: Sequence[VersionSnapshot]) -> list[int]:
    return sorted(v.version for v in versions if not v.aspired and v.state == State.AVAILABLE)


def _highest_new_aspired(versions: Sequence[VersionSnapshot]) -> Action | None:
    candidates = [v.version for v in versions if v.aspired and v.state == State.NEW]
    return Action(ActionKind.LOAD, max(candidates)) if candidates else None


class AvailabilityPreservingPolicy:
    """Load the new version before unloading the old, so the model never stops serving.

    An un-aspired available version is unloaded (lowest first) only once an aspired
    version is available, or when the model has no aspired version left at all. A new
    version that fails to load therefore leaves the old one serving.
    """

    name = "availability"

    def next_action(self, versions: Sequence[VersionSnapshot]) -> Action | None:
        action = _cleanup_action(versions)
        if action:
            return action
        unaspired_available = _unaspired_available(versions)
        if unaspired_available:
            aspired = [v for v in versions if v.aspired]
            if not aspired or any(v.state == State.AVAILABLE for v in aspired):
                return Action(ActionKind.UNLOAD, unaspired_available[0])
        return _highest_new_aspired(versions)


class ResourcePreservingPolicy:
    """Unload before loading, for models that do not fit in memory twice.

    The model is unavailable between the old version's unload and the new one's load.
    """

    name = "resource"

    def next_action(self, versions: Sequence[VersionSnapshot]) -> Action | None:
        action = _cleanup_action(versions)
        if action:
            return action
        unaspired_available = _unaspired_available(versions)
        if unaspired_available:
            return Action(ActionKind.UNLOAD, unaspired_available[0])
        if any(not v.aspired and v.state == State.UNLOADING for v in versions):
            return None
        return _highest_new_aspired(versions)


POLICIES: dict[str, type[AspiredVersionPolicy]] = {
    AvailabilityPreservingPolicy.name: AvailabilityPreservingPolicy,
    ResourcePreservingPolicy.name: ResourcePreservingPolicy,
}
