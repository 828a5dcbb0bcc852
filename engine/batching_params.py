"""What the batching scheduler is told: TF Serving's `BatchingParameters`, as plain values.

Defaults are TF Serving's (`BasicBatchScheduler::Options`), so a batching file that sets
only some fields behaves as it does there. The engine never sees protobuf: the adapter
that reads `--batching_parameters_file` turns the text proto into this.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=_cpu_count)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None  # None: max_batch_size, as TF Serving
    # pyserving's own (not in TF Serving's proto): also run a batch once no request has
    # joined it for this long, so a short burst need not wait the whole timeout. 0: off.
    idle_micros: int = 0

    @property
    def execution_batch_size(self) -> int:
        """The largest batch that runs: with splitting, requests are cut to fit it."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    @property
    def batch_timeout_s(self) -> float:
        return self.batch_timeout_micros / 1e6

    def padded_size(self, size: int) -> int:
        """The allowed batch size a batch of `size` is padded up to (itself if none given)."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    def validate(self) -> None:
        """Raise ValueError naming the field and the fix, as a start-up error should."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.idle_micros < 0:
            raise ValueError(
                f"the idle time must be 0 or more microseconds, got {self.idle_micros}"
            )
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"batch_timeout_micros must be 0 or more, got {self.batch_timeout_micros}"
            )
        execution = self.max_execution_batch_size
        if (
            self.enable_large_batch_splitting
            and execution is not None
            and not 1 <= execution <= self.max_batch_size
        ):
            raise ValueError(
                f"max_execution_batch_size must be between 1 and max_batch_size "
                f"({self.max_batch_size}), got {execution}"
            )
        sizes = self.allowed_batch_sizes
        if not sizes:
            return
        if sizes[0] < 1 or any(a >= b for a, b in itertools.pairwise(sizes)):
            raise ValueError(
                f"allowed_batch_sizes must be positive and strictly increasing, got {list(sizes)}"
            )
        limit_name = (
            "max_execution_batch_size" if self.enable_large_batch_splitting else "max_batch_size"
        )
        if sizes[-1] != self.execution_batch_size:
            raise ValueError(
                f"the last entry of allowed_batch_sizes ({sizes[-1]}) must equal {limit_name} "
                f"({self.execution_batch_size}): add {self.execution_batch_size} to "
                f"allowed_batch_sizes or set {limit_name} to {sizes[-1]}"
            )
