"""Version folders of the `python` platform: a model.py and its config.json, moved in whole.

`write_python_version` writes any model.py; `write_scaling_version` writes the suites'
common one (SCALING_MODEL_PY), which scales by a per-version factor."""

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


# A real pre/post-processing servable: scales features by a per-version factor read at
# load time from the version folder, regresses on tf.Examples, records its unload.
SCALING_MODEL_PY = """
import json
import os

import numpy as np
import tensorflow as tf

SIGNATURES = {
    "serving_default": {
        "inputs": {"x": ("float32", [None, 2])},
        "outputs": {"y": ("float32", [None]), "version": ("int64", [])},
    },
    "regress": {
        "method_name": "tensorflow/serving/regress",
        "inputs": {"inputs": ("string", [None])},
        "outputs": {"outputs": ("float32", [None])},
        "function": "regress",
    },
    "label": {
        "inputs": {"x": ("float32", [None, 2])},
        "outputs": {"label": ("string", [None])},
        "function": "label",
    },
}


def load(path):
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    return {"factor": float(config["factor"]), "version": int(config["version"]),
            "unload_marker": config.get("unload_marker")}


def predict(state, inputs):
    x = inputs["x"]
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    return {"y": x.sum(axis=1) * state["factor"], "version": np.int64(state["version"])}


def regress(state, inputs):
    parsed = tf.io.parse_example(inputs["inputs"], {"x": tf.io.FixedLenFeature([], tf.float32)})
    return {"outputs": parsed["x"].numpy() * state["factor"]}


def label(state, inputs):
    return {"label": ["big" if v > 1 else "small" for v in inputs["x"].sum(axis=1)]}


def unload(state):
    if state["unload_marker"]:
        with open(state["unload_marker"], "a") as f:
            f.write(str(state["version"]) + "\\n")
"""


def write_scaling_version(
    base: Path, version: int, factor: float, unload_marker: Path | None = None
) -> Path:
    """SCALING_MODEL_PY as `version`, scaling by `factor`; its unload appends the version
    to `unload_marker` when given."""
    config: dict[str, object] = {"factor": factor, "version": version}
    if unload_marker is not None:
        config["unload_marker"] = str(unload_marker)
    return write_python_version(base, version, SCALING_MODEL_PY, config)
