"""Version folders of the `python` platform: a model.py and its config.json, moved in whole."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def write_python_version(base: Path, version: int, model_py: str, config: dict[str, Any]) -> Path:
    """Write the version beside its target and rename it in, as a careful user would (a
    watcher never sees half a version)."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{version}-{time.monotonic_ns()}"
    staging.mkdir()
    (staging / "model.py").write_text(model_py)
    (staging / "config.json").write_text(json.dumps(config))
    target = base / str(version)
    staging.rename(target)
    return target
