"""--enable_per_model_batching_parameters: each version batched by its own parameters.

TF Serving (bundle_factory_util.cc GetPerModelBatchingParams) then wraps a version's
Session for batching only when its folder holds `batching_params.pbtxt`, with those
parameters; a version without the file is not batched at all. The thread pool stays the
server-wide one: "Only threadpool (name and size) related params are used from the
global config".

Here the loader reads the file and hands the parameters over on the servable
(`batching_options`; None: no file); this runner sends each request to the batching
scheduler of its version's parameters (one per distinct parameters, made on first use,
with the server-wide thread pool name and size, and pyserving's idle time), or to a
direct call when the version has none. Unlike TF Serving's one shared pool, each
distinct set of parameters has its own num_batch_threads threads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from pyserving.engine.batching import BatchingRunner, RejectCallback
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.events import Event
from pyserving.engine.runner import DirectRunner, ModelCall
from pyserving.engine.servable_map import ServableHandle


class PerVersionBatchingRunner:
    """A `Runner`: each version's own batching scheduler, or a direct call without one."""

    def __init__(
        self,
        options: BatchingOptions,
        direct: DirectRunner,
        publish: Callable[[Event], Any] | None = None,
        on_reject: RejectCallback | None = None,
    ) -> None:
        self.options = options  # the server-wide parameters: their thread pool applies
        self._direct = direct
        self._publish = publish
        self._on_reject = on_reject
        self._schedulers: dict[BatchingOptions, BatchingRunner] = {}
        self._tracer: Any = None

    @property
    def tracer(self) -> Any:
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: Any) -> None:
        self._tracer = tracer
        for scheduler in self._schedulers.values():
            scheduler.tracer = tracer

    def effective(self, version: BatchingOptions) -> BatchingOptions:
        """A version's parameters with the server-wide thread pool and idle time."""
        return dataclasses.replace(
            version,
            num_batch_threads=self.options.num_batch_threads,
            thread_pool_name=self.options.thread_pool_name,
            idle_micros=self.options.idle_micros,
        )

    def scheduler_for(self, handle: ServableHandle) -> BatchingRunner | None:
        version = getattr(handle.servable, "batching_options", None)
        if version is None:
            return None
        options = self.effective(version)
        scheduler = self._schedulers.get(options)
        if scheduler is None:  # made on the event loop, so no two for the same options
            scheduler = BatchingRunner(options, self._publish, self._on_reject)
            scheduler.tracer = self._tracer
            self._schedulers[options] = scheduler
        return scheduler

    async def run(
        self, handle: ServableHandle, call: ModelCall, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        scheduler = self.scheduler_for(handle)
        runner: Any = self._direct if scheduler is None else scheduler
        outputs: dict[str, np.ndarray] = await runner.run(handle, call, deadline)
        return outputs

    def queue_depths(self) -> dict[tuple[str, int, str], int]:
        depths: dict[tuple[str, int, str], int] = {}
        for scheduler in list(self._schedulers.values()):
            for key, count in scheduler.queue_depths().items():
                depths[key] = depths.get(key, 0) + count
        return depths

    def close(self) -> None:
        for scheduler in self._schedulers.values():
            scheduler.close()
        self._direct.close()
