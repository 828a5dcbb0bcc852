"""The one interface request tracing is reached through; no tracing library behind it here.

The composition root (api/server.py) hands an implementation (adapters/otel_tracer.py) to
the request envelope and the batching scheduler only when traces are turned on; without
one they pay one `is None` check per request. A request the tracer does not record (not
sampled) gets no trace object at all, so nothing below the envelope does any work for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pyserving.engine.request_scope import RequestScope


class Tracer(Protocol):
    def begin(self, scope: RequestScope, carrier: Any) -> Any | None:
        """A request starts: its trace (continuing the caller's, read from `carrier`: gRPC
        metadata or HTTP headers), or None when it is not recorded."""
        ...

    def end(self, trace: Any, scope: RequestScope, code: str) -> None:
        """The request `begin` traced finished with status `code` (a gRPC code name)."""
        ...

    def current(self) -> Any | None:
        """The recorded request running in this context (the event loop's task), or None."""
        ...

    # -------- across processes (--workers): the front-end records the request, the engine
    # its model runs; the request's span context goes with the call, the times come back.
    def carrier(self, trace: Any) -> list[Any]:
        """Front-end: what the engine needs to make `trace`'s run and queue spans (msgpack)."""
        ...

    def adopt(self, carrier: list[Any]) -> Any:
        """Engine: the trace of a request a front-end records, current in this context
        until `release`; its runs and queues become children of the front-end's span."""
        ...

    def release(self, trace: Any) -> list[Any]:
        """Engine: the adopted request's model calls are done; what `answered` takes."""
        ...

    def answered(self, trace: Any, times: list[Any]) -> None:
        """Front-end: the engine's `release` of the request `trace` records."""
        ...

    def batch_run(
        self,
        traces: Sequence[Any | None],
        model: str,
        version: int,
        signature: str,
        started_ns: int,
        ended_ns: int,
        size: int,
        padded_size: int,
        error: str,
    ) -> None:
        """One batch's model run (wall-clock ns), for the requests in it (None: untraced);
        called on the batch thread."""
        ...
