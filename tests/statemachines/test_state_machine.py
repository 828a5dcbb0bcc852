"""The servable-version machine: every legal path works, every illegal trigger is refused."""

from __future__ import annotations

import pytest

from pyserving.engine.events import Transition
from pyserving.statemachines.servable_version import (
    TRANSITIONS,
    MachineError,
    ServableVersionMachine,
    State,
)
from tests.util.lifecycle import machine_recording

TRIGGERS = sorted({t["trigger"] for t in TRANSITIONS})
LEGAL = {(t["source"], t["trigger"]): t["dest"] for t in TRANSITIONS}

# Every path from new to a state with no way out.
LEGAL_PATHS = [
    ["start_load", "load_succeeded", "start_unload", "unload_finished"],
    ["start_load", "load_failed", "retire"],
    ["cancel"],
]

# Triggers that bring a fresh machine to each state.
REACH = {
    State.NEW: [],
    State.LOADING: ["start_load"],
    State.AVAILABLE: ["start_load", "load_succeeded"],
    State.UNLOADING: ["start_load", "load_succeeded", "start_unload"],
    State.END: ["cancel"],
    State.ERROR: ["start_load", "load_failed"],
}


def make_machine() -> tuple[ServableVersionMachine, list[Transition]]:
    published: list[Transition] = []
    return machine_recording(published, "mnist", 3), published


@pytest.mark.parametrize("path", LEGAL_PATHS, ids=lambda p: "-".join(p))
def test_legal_path_publishes_each_transition(path: list[str]) -> None:
    machine, published = make_machine()
    for trigger in path:
        getattr(machine, trigger)(reason=f"because {trigger}")
    assert machine.current == State.END
    assert [t.trigger for t in published] == path
    states = [State.NEW.value] + [t.dst for t in published]
    assert [t.src for t in published] == states[:-1]
    assert all(t.model == "mnist" and t.version == 3 for t in published)
    assert published[0].reason == f"because {path[0]}"


def test_every_state_is_reachable_and_every_transition_is_on_a_path() -> None:
    covered = {(step_src, trig) for path in LEGAL_PATHS for step_src, trig in _walk(path)}
    assert covered == set(LEGAL)
    assert {s.value for s in State} == {s.value for s in REACH}


def _walk(path: list[str]) -> list[tuple[str, str]]:
    state, steps = State.NEW.value, []
    for trigger in path:
        steps.append((state, trigger))
        state = LEGAL[(state, trigger)]
    return steps


@pytest.mark.parametrize("state", list(State), ids=str)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_illegal_trigger_raises_and_changes_nothing(state: State, trigger: str) -> None:
    machine, published = make_machine()
    for step in REACH[state]:
        getattr(machine, step)()
    assert machine.current == state
    before = len(published)
    if (state.value, trigger) in LEGAL:
        assert machine.can(trigger)
        getattr(machine, trigger)()
        assert machine.current == LEGAL[(state.value, trigger)]
        assert len(published) == before + 1
    else:
        assert not machine.can(trigger)
        with pytest.raises(MachineError):
            getattr(machine, trigger)()
        assert machine.current == state
        assert len(published) == before


def test_failed_load_records_its_error() -> None:
    machine, published = make_machine()
    machine.start_load()
    machine.load_failed(reason="OSError: saved_model.pb is garbage")
    assert machine.current == State.ERROR
    assert machine.error == "OSError: saved_model.pb is garbage"
    assert published[-1].dst == "error"


def test_versions_share_the_machine_but_not_their_state() -> None:
    one, published_one = make_machine()
    two, published_two = make_machine()
    one.start_load()
    one.load_succeeded()
    two.cancel()
    assert (one.current, two.current) == (State.AVAILABLE, State.END)
    assert [t.trigger for t in published_one] == ["start_load", "load_succeeded"]
    assert [t.trigger for t in published_two] == ["cancel"]
    assert one.can("start_unload") and not two.can("start_unload")
