"""Small real servables for engine tests that need no TensorFlow."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec


class ConstantServable:
    """A real (tiny) servable: returns its version number for any input."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.unloaded = False

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return {}

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> dict[str, np.ndarray]:
        assert not self.unloaded, "ran on an unloaded servable"
        return {"version": np.array([self.version])}

    def signature_def_map(self) -> None:
        return None

    def unload(self) -> None:
        self.unloaded = True


class ConstantLoader:
    """Loads a ConstantServable whose version is the folder's name; raises for listed paths."""

    platform = "constant"

    def __init__(self, failing: Sequence[str] = ()) -> None:
        self.failing = set(failing)
        self.loads: list[str] = []

    def load(self, path: str) -> ConstantServable:
        self.loads.append(path)
        if path in self.failing:
            raise OSError(f"cannot read {path}")
        return ConstantServable(int(path.rsplit("/", 1)[-1]))


class GatedLoader(ConstantLoader):
    """A ConstantLoader whose loads of `gated` paths wait until `open(path)` is called."""

    def __init__(self, gated: Sequence[str] = (), failing: Sequence[str] = ()) -> None:
        super().__init__(failing)
        self._gates = {path: threading.Event() for path in gated}
        self.started: set[str] = set()

    def open(self, path: str) -> None:
        self._gates[path].set()

    def load(self, path: str) -> ConstantServable:
        self.started.add(path)
        gate = self._gates.get(path)
        if gate is not None and not gate.wait(30):
            raise TimeoutError(f"gate for {path} never opened")
        return super().load(path)


SIG = "serving_default"
WAIT_S = 10.0  # generous bound for anything that should happen "soon"


class RecordingServable:
    """Doubles input `x`; records every batch it ran; can be held at a gate or made to fail.

    A negative input makes the run fail with INVALID_ARGUMENT, a NaN with a plain
    exception (a model bug): both fail the whole batch they are in.
    """

    def __init__(self, inner: tuple[int | None, ...] = (2,)) -> None:
        spec = TensorSpec("x", np.dtype(np.float32), (None, *inner))
        out = TensorSpec("y", np.dtype(np.float32), (None, *inner))
        self._signatures = {
            SIG: Signature(SIG, "tensorflow/serving/predict", {"x": spec}, {"y": out})
        }
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.running = threading.Event()
        self.unloaded = False
        self._lock = threading.Lock()

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> dict[str, np.ndarray]:
        assert not self.unloaded, "ran on an unloaded servable"
        x = inputs["x"]
        with self._lock:
            self.batches.append(x.copy())
        self.running.set()
        if not self.gate.wait(WAIT_S * 3):
            raise RuntimeError("test gate never opened")
        if np.isnan(x).any():
            raise RuntimeError("model bug")
        if (x < 0).any():
            raise ServingError(Code.INVALID_ARGUMENT, "negative input")
        return {"y": x * 2}

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    def signature_def_map(self) -> None:
        return None

    def unload(self) -> None:
        self.unloaded = True
