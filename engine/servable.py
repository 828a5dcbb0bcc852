"""What a loaded model version is to the engine, whatever platform produced it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: its alias, dtype and shape (None = any size)."""

    alias: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None  # None: unknown rank
    name: str = ""  # the graph tensor it feeds or fetches, where the platform has a graph

    def shape_text(self) -> str:
        if self.shape is None:
            return "<unknown rank>"
        return "[" + ",".join("-1" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    defaults: frozenset[str] = frozenset()  # inputs the SignatureDef gives a default value


class Servable(Protocol):
    """A loaded version. `run` is called from batch/request threads, concurrently."""

    @property
    def signatures(self) -> Mapping[str, Signature]: ...

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> dict[str, np.ndarray]: ...

    def signature_def_map(self) -> Any:
        """The signatures as TF Serving's `SignatureDefMap` proto, for GetModelMetadata."""
        ...

    def unload(self) -> None:
        """Drop the model's resources; called once, after the last request finished."""
        ...


class Loader(Protocol):
    """Turns a version folder into a servable. Raising fails the load attempt."""

    platform: str

    def load(self, path: str) -> Servable: ...
