"""Aspired-version policies decide the next action from a snapshot of one model."""

from __future__ import annotations

import pytest

from pyserving.engine.policy import (
    Action,
    ActionKind,
    AvailabilityPreservingPolicy,
    ResourcePreservingPolicy,
    VersionSnapshot,
)
from pyserving.statemachines.servable_version import State

A, R = AvailabilityPreservingPolicy(), ResourcePreservingPolicy()
LOAD, UNLOAD, CANCEL, RETIRE = (
    ActionKind.LOAD,
    ActionKind.UNLOAD,
    ActionKind.CANCEL,
    ActionKind.RETIRE,
)


def snap(*versions: tuple[int, State, bool]) -> list[VersionSnapshot]:
    return [VersionSnapshot(v, s, a) for v, s, a in versions]


CASES = [
    # (description, snapshot, availability's answer, resource's answer)
    ("first version loads", snap((1, State.NEW, True)), Action(LOAD, 1), Action(LOAD, 1)),
    (
        "highest new aspired version loads first",
        snap((1, State.NEW, True), (3, State.NEW, True), (2, State.NEW, True)),
        Action(LOAD, 3),
        Action(LOAD, 3),
    ),
    (
        "new version loads while the old serves (availability) / old unloads first (resource)",
        snap((1, State.AVAILABLE, False), (2, State.NEW, True)),
        Action(LOAD, 2),
        Action(UNLOAD, 1),
    ),
    (
        "old keeps serving while the new one loads",
        snap((1, State.AVAILABLE, False), (2, State.LOADING, True)),
        None,
        Action(UNLOAD, 1),
    ),
    (
        "old unloads once the new one is available",
        snap((1, State.AVAILABLE, False), (2, State.AVAILABLE, True)),
        Action(UNLOAD, 1),
        Action(UNLOAD, 1),
    ),
    (
        "failed new version never takes down the old one (availability)",
        snap((1, State.AVAILABLE, False), (2, State.ERROR, True)),
        None,
        Action(UNLOAD, 1),
    ),
    (
        "resource policy waits for the unload before loading",
        snap((1, State.UNLOADING, False), (2, State.NEW, True)),
        Action(LOAD, 2),
        None,
    ),
    (
        "lowest un-aspired version unloads first",
        snap((3, State.AVAILABLE, False), (1, State.AVAILABLE, False), (4, State.AVAILABLE, True)),
        Action(UNLOAD, 1),
        Action(UNLOAD, 1),
    ),
    (
        "no aspired version left: unload what serves",
        snap((1, State.AVAILABLE, False)),
        Action(UNLOAD, 1),
        Action(UNLOAD, 1),
    ),
    (
        "un-aspired before loading started: cancel",
        snap((1, State.AVAILABLE, True), (2, State.NEW, False)),
        Action(CANCEL, 2),
        Action(CANCEL, 2),
    ),
    (
        "failed and no longer aspired: retire",
        snap((2, State.ERROR, False), (3, State.AVAILABLE, True)),
        Action(RETIRE, 2),
        Action(RETIRE, 2),
    ),
    (
        "failed aspired version is not retried by the policy",
        snap((2, State.ERROR, True)),
        None,
        None,
    ),
    ("settled", snap((2, State.AVAILABLE, True)), None, None),
    ("nothing at all", snap(), None, None),
]


@pytest.mark.parametrize(
    ("snapshot", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_availability_preserving(snapshot: list[VersionSnapshot], expected: Action | None) -> None:
    assert A.next_action(snapshot) == expected


@pytest.mark.parametrize(
    ("snapshot", "expected"), [(c[1], c[3]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_resource_preserving(snapshot: list[VersionSnapshot], expected: Action | None) -> None:
    assert R.next_action(snapshot) == expected


def _drive(policy: AvailabilityPreservingPolicy | ResourcePreservingPolicy) -> list[str]:
    """Simulate a swap 1 → 2 with instant loads/unloads; return what was serving per step."""
    states = {1: State.AVAILABLE, 2: State.NEW}
    aspired = {2}
    finish = {State.LOADING: State.AVAILABLE, State.UNLOADING: State.END}
    serving: list[str] = []
    for _ in range(20):
        action = policy.next_action(
            [VersionSnapshot(v, s, v in aspired) for v, s in states.items() if s != State.END]
        )
        if action is None:
            pending = [v for v, s in states.items() if s in finish]
            if not pending:
                break
            states[pending[0]] = finish[states[pending[0]]]
        elif action.kind is LOAD:
            states[action.version] = State.LOADING
        elif action.kind is UNLOAD:
            states[action.version] = State.UNLOADING
        serving.append(",".join(str(v) for v, s in states.items() if s == State.AVAILABLE))
    return serving


def test_availability_policy_never_leaves_the_model_unavailable() -> None:
    serving = _drive(A)
    assert "" not in serving
    assert serving[-1] == "2"


def test_resource_policy_has_a_gap_and_never_holds_two_versions() -> None:
    serving = _drive(R)
    assert "" in serving  # the availability gap the resource policy implies
    assert "1,2" not in serving
    assert serving[-1] == "2"
