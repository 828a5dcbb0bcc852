"""A servable version's identity: TF Serving's `ServableId` {name, version}.

What the manager, replay's timeline, the metrics and the tracer key their per-version
state by. A NamedTuple, so a `(model, version)` pair compares equal to it, hashes the
same and unpacks the same: code may take it up one place at a time.
"""

from __future__ import annotations

from typing import NamedTuple


class ServableId(NamedTuple):
    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model} v{self.version}"


class OfVersion:
    """A mixin for whatever has a `model` and a `version`: its `servable_id`. (A plain
    class: a dataclass that inherits it does not take these annotations as fields.)"""

    model: str
    version: int

    @property
    def servable_id(self) -> ServableId:
        return ServableId(self.model, self.version)
