"""Python-platform versions whose load and predict misbehave on request (real code paths).

Each version folder holds MODEL_PY and a config.json saying how this version behaves:
`load_sleep` (seconds load() takes), `load_raise` (load() raises this message),
`started_marker` (a file load() creates first), `reread` (read config.json again after
the sleep: a folder that vanished meanwhile fails the load), `predict_sleep`,
`slow_started` (a file the `slow` signature creates once it runs: the test's proof that a
request is inside the model call, where a sleep would only guess).
"""

from __future__ import annotations

from pathlib import Path

from tensorflow_serving.apis import get_model_status_pb2

from tests.util.python_models import write_python_version

MODEL_PY = """
import json
import os
import time

import numpy as np

SIGNATURES = {
    "serving_default": {
        "inputs": {"x": ("float32", [None])},
        "outputs": {"y": ("float32", [None]), "version": ("int64", [])},
    },
    "slow": {
        "inputs": {"seconds": ("float32", [])},
        "outputs": {"version": ("int64", [])},
        "function": "slow",
    },
    "strings": {
        "inputs": {"s": ("string", [None])},
        "outputs": {"echo": ("string", [None]), "n": ("int64", [None])},
        "function": "strings",
    },
}


def load(path):
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    if config.get("started_marker"):
        open(config["started_marker"], "w").close()
    time.sleep(config.get("load_sleep", 0))
    if config.get("load_raise"):
        raise RuntimeError(config["load_raise"])
    if config.get("reread"):
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    return config


def predict(state, inputs):
    time.sleep(state.get("predict_sleep", 0))
    return {"y": inputs["x"] * state["factor"], "version": np.int64(state["version"])}


def slow(state, inputs):
    if state.get("slow_started"):
        open(state["slow_started"], "a").close()
    time.sleep(min(float(inputs["seconds"]), 30.0))
    return {"version": np.int64(state["version"])}


def strings(state, inputs):
    s = inputs["s"]
    return {"echo": s, "n": np.array([len(v) for v in s.ravel()], dtype=np.int64)}
"""

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def write_version(base: Path, version: int, factor: float = 1.0, **behaviour: object) -> Path:
    """This module's MODEL_PY as `version`, behaving as `behaviour` says."""
    return write_python_version(
        base, version, MODEL_PY, {"version": version, "factor": factor, **behaviour}
    )


def config_file(path: Path, models: dict[str, tuple[Path, str]], extra: str = "") -> Path:
    """A ModelServerConfig with python models: name → (base path, version selection text)."""
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "python" {policy} }}\n'
        for name, (base, policy) in models.items()
    )
    path.write_text(f"model_config_list {{\n{entries}}}\n{extra}")
    return path
