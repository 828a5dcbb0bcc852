"""Version folders on disk and a recorder of what a source publishes, for source tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pyserving.engine.events import AspiredVersions, Event


def make_versions(base: Path, *names: str, quiet: bool = True) -> None:
    """Version folders holding a saved_model.pb, written long ago unless `quiet` is False."""
    for name in names:
        folder = base / name
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"model")
        if quiet:
            os.utime(folder / "saved_model.pb", (time.time() - 60, time.time() - 60))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def versions(self) -> list[list[int]]:
        aspired = [e for e in self.events if isinstance(e, AspiredVersions)]
        return [[v.version for v in e.versions] for e in aspired]
