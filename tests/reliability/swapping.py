"""Version swaps through the file system, as an operator does them, and their timeline."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.conftest import TrainedModels, transitions
from tests.reliability.models import AVAILABLE, END
from tests.util.processes import ServerProcess


def swap(
    server: ServerProcess,
    trained: TrainedModels,
    base: Path,
    model: str,
    old: int,
    new: int,
    timeout: float = 120.0,
) -> None:
    """Add version `new` (a copy of export 1 or 2), wait until it serves and `old` has
    ended (availability policy: new loads first), then delete `old`'s folder."""
    copied = trained.copy_version(1 + new % 2, base / "incoming")  # not numeric: ignored
    copied.rename(base / str(new))

    def swapped() -> bool:
        states = server.version_states(model)
        return states.get(new) == AVAILABLE and states.get(old) == END

    server.wait_for(swapped, timeout=timeout, what=f"{model} swapped from {old} to {new}")
    shutil.rmtree(base / str(old))


@dataclass(frozen=True)
class Window:
    """When a version served: from its move to available until its unload began."""

    available: float
    unloading: float = math.inf
    ended: float = math.inf


def serving_windows(event_log: Path, model: str) -> dict[int, Window]:
    windows: dict[int, Window] = {}
    for t in transitions(event_log):
        if t.model != model:
            continue
        if t.dst == "available":
            windows[t.version] = Window(t.time)
        elif t.src == "available" and t.dst == "unloading":
            windows[t.version] = Window(windows[t.version].available, t.time)
        elif t.src == "unloading" and t.dst == "end":
            w = windows[t.version]
            windows[t.version] = Window(w.available, w.unloading, t.time)
    return windows
