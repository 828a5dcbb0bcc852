"""Small real servables for engine tests that need no TensorFlow."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from pyserving.engine.servable import Signature


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
