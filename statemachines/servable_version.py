"""The lifecycle of one servable version as a `transitions` state machine.

    new ──start_load──► loading ──load_succeeded──► available ──start_unload──► unloading
     │                     │                                                        │
     └──cancel──► end ◄────┼──────────────────────unload_finished───────────────────┘
                   ▲       └──load_failed──► error ──retire──┘

Only these moves exist: any other trigger raises `MachineError` and leaves the state
as it was. Every move is reported to `on_transition` in plain values; the engine makes
each one a `Transition` event, which is how metrics, logs, the event log and replay all
learn of it. (Plain values, so that this module, the bottom layer, imports nothing of
the engine's.)

One `transitions.Machine`, built once, drives every version: it holds the states,
moves and callbacks, and a version is only the model it runs on (its `state`
attribute). Building a Machine per version cost ~400 us, which replaying a log of
thousands of versions paid per version; the shared one costs nothing per version.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from transitions import EventData, Machine, MachineError

__all__ = ["TRANSITIONS", "MachineError", "OnTransition", "ServableVersionMachine", "State"]


class State(StrEnum):
    NEW = "new"
    LOADING = "loading"
    AVAILABLE = "available"
    UNLOADING = "unloading"
    END = "end"
    ERROR = "error"


# Plain string values (not the enum) so that `transitions` stores and reports "loading",
# not "LOADING", and a machine's state compares equal to `State` members.
TRANSITIONS: list[dict[str, str]] = [
    {"trigger": "start_load", "source": State.NEW.value, "dest": State.LOADING.value},
    {"trigger": "load_succeeded", "source": State.LOADING.value, "dest": State.AVAILABLE.value},
    {"trigger": "load_failed", "source": State.LOADING.value, "dest": State.ERROR.value},
    {"trigger": "start_unload", "source": State.AVAILABLE.value, "dest": State.UNLOADING.value},
    {"trigger": "unload_finished", "source": State.UNLOADING.value, "dest": State.END.value},
    {"trigger": "cancel", "source": State.NEW.value, "dest": State.END.value},
    {"trigger": "retire", "source": State.ERROR.value, "dest": State.END.value},
]

_BY_VALUE = {s.value: s for s in State}


class OnTransition(Protocol):
    """What hears each move: the fields of `pyserving.engine.events.Transition`."""

    def __call__(
        self, *, model: str, version: int, src: str, dst: str, trigger: str, reason: str
    ) -> object: ...


# Read-only after construction (no models are added to it; see `_trigger`), so sharing it
# across threads and managers shares no mutable state.
_MACHINE = Machine(
    model=None,
    states=[s.value for s in State],
    transitions=TRANSITIONS,
    initial=State.NEW.value,
    auto_transitions=False,
    send_event=True,
    after_state_change="_publish",
)


class ServableVersionMachine:
    """One (model, version) pair's state. Triggers take an optional `reason=` keyword."""

    state: str

    def __init__(
        self,
        model: str,
        version: int,
        path: str,
        on_transition: OnTransition,
    ) -> None:
        self.model = model
        self.version = version
        self.path = path
        self.error = ""
        self.state = State.NEW.value
        self._on_transition = on_transition

    def _trigger(self, trigger: str, **kwargs: object) -> bool:
        """Run `trigger` on this version through the shared machine (MachineError if the
        state has no such move); what a per-model Machine binds as the trigger method."""
        moved: bool = _MACHINE.events[trigger].trigger(self, **kwargs)
        return moved

    def start_load(self, **kwargs: object) -> bool:
        return self._trigger("start_load", **kwargs)

    def load_succeeded(self, **kwargs: object) -> bool:
        return self._trigger("load_succeeded", **kwargs)

    def load_failed(self, **kwargs: object) -> bool:
        return self._trigger("load_failed", **kwargs)

    def start_unload(self, **kwargs: object) -> bool:
        return self._trigger("start_unload", **kwargs)

    def unload_finished(self, **kwargs: object) -> bool:
        return self._trigger("unload_finished", **kwargs)

    def cancel(self, **kwargs: object) -> bool:
        return self._trigger("cancel", **kwargs)

    def retire(self, **kwargs: object) -> bool:
        return self._trigger("retire", **kwargs)

    @property
    def current(self) -> State:
        return _BY_VALUE[self.state]  # a dict lookup: this is on every policy step

    def can(self, trigger: str) -> bool:
        return bool(_MACHINE.get_transitions(trigger=trigger, source=self.state))

    def _publish(self, event: EventData) -> None:
        reason = str(event.kwargs.get("reason", ""))
        move = event.transition
        assert move is not None  # after_state_change runs only once a transition has run
        if move.dest == State.ERROR.value:
            self.error = reason
        self._on_transition(
            model=self.model,
            version=self.version,
            src=str(move.source),
            dst=str(move.dest),
            trigger=event.event.name,
            reason=reason,
        )

    def __repr__(self) -> str:
        return f"ServableVersionMachine({self.model!r}, {self.version}, state={self.state!r})"
