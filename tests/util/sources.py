"""Version folders on disk and a recorder of what a source publishes, for source tests."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
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


def stage_version(
    export_dir: Path, version: int, into: Path, copy: Callable[..., object] = shutil.copy2
) -> Path:
    """Put an exported version into a watched folder atomically, as a careful user does:
    copied (or linked, with `copy=os.link`) beside it under a dot-name, then renamed."""
    into.mkdir(parents=True, exist_ok=True)
    staging = into / f".staging-{version}"
    shutil.copytree(export_dir / str(version), staging, copy_function=copy)
    target = into / str(version)
    staging.rename(target)
    return target
