"""What the engine serves its front-ends besides the data plane: the shared counts and state
every front-end process must see the same (docs/processes.md).

- `observe`: each front-end's finished requests, and its request log's records written
  and dropped (by reason), in batches; the engine counts them in its one registry, so a
  scrape counts each request once and a restarted front-end's requests stay counted.
- `metrics`: the whole exposition (pyserving's and TF Serving's names), which any
  front-end's `/monitoring/prometheus/metrics` answers with.
- `request_logs`: each model's `logging_config` in the config in force, with the config's
  generation, so front-ends log (in their own files) what the engine's config says.
- `frontend_ready`: a front-end listens; the supervisor counts it started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from pyserving.adapters.ipc.data_plane import data_plane_handler
from pyserving.adapters.ipc.engine_side import Answer, Call, Handler
from pyserving.adapters.request_log.writer import DROP_REASONS
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.trace_hooks import Tracer

log = structlog.get_logger("pyserving.engine")

Method = Callable[[Call], Awaitable[Answer]]
# (model, api, code, seconds) for each request a front-end finished.
Observe = Callable[[str, str, str, float], None]
# (model name, sampling rate, filename prefix) of each model whose requests are logged.
RequestLogs = Callable[[], list[tuple[str, float, str]]]
# The request log's counters: records written, and records dropped with their reason.
LogWritten = Callable[[], None]
LogDrop = Callable[[str], None]


def engine_handler(
    plane: DataPlane,
    services: Mapping[str, Method],
    config: Generation,
    serving: Generation,
    tracer: Tracer | None = None,
) -> Handler:
    """The engine's one handler: the data plane's methods (a front-end's traced requests
    traced under its spans with `tracer`) and `services`, every answer stamped with the
    config's and the serving map's generations."""
    handler = with_methods(data_plane_handler(plane, tracer), services)
    return stamped(handler, config, serving)


def with_methods(handler: Handler, methods: Mapping[str, Method]) -> Handler:
    """`handler` answering `methods` too (looked up first)."""

    async def handle(call: Call) -> Answer:
        method = methods.get(call.method)
        if method is None:
            return await handler(call)
        return await method(call)

    return handle


def engine_services(
    observe: Observe,
    exposition: Callable[[], Awaitable[bytes]],
    request_logs: RequestLogs,
    generation: Callable[[], int],
    frontend_ready: Callable[[int, int], None],
    log_written: LogWritten,
    log_drop: LogDrop,
) -> dict[str, Method]:
    """The methods above, over the engine's own objects (wired by the composition root)."""

    async def observe_batch(call: Call) -> Answer:
        try:
            for model, api, code, seconds in call.params["observations"]:
                observe(str(model), str(api), str(code), float(seconds))
            for key, count in call.params.get("request_log", {}).items():
                if key != "written" and key not in DROP_REASONS:
                    raise ValueError(f"unknown request log count {key!r}")
                for _ in range(int(count)):
                    if key == "written":
                        log_written()
                    else:
                        log_drop(key)
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # a front-end's bug
            raise ServingError(Code.INVALID_ARGUMENT, f"observe: {error!r}") from None
        return Answer({})

    async def metrics(call: Call) -> Answer:
        return Answer({"text": await exposition()})

    async def logs(call: Call) -> Answer:
        # The generation first: a config applied meanwhile is fetched again on its next change.
        current = generation()
        return Answer({"generation": current, "models": [list(m) for m in request_logs()]})

    async def ready(call: Call) -> Answer:
        frontend_ready(int(call.params["worker"]), int(call.params["pid"]))
        return Answer({})

    return {
        "observe": observe_batch,
        "metrics": metrics,
        "request_logs": logs,
        "frontend_ready": ready,
    }


def stamped(handler: Handler, config: Callable[[], int], serving: Callable[[], int]) -> Handler:
    """`handler` whose every answer carries the generations of the config and of the serving
    map it was made under: a front-end learns of a new config (its request logs) before it
    logs the request that answer is for, and keeps a signature only while the map stays."""

    async def handle(call: Call) -> Answer:
        answer = await handler(call)
        params = {**answer.params, "generation": config(), "serving": serving()}
        return Answer(params, answer.tensors)

    return handle


class Generation:
    """A number that grows each time `current()` is another object: the config in force
    (a reload makes a new one), the serving map (copied on every change)."""

    def __init__(self, current: Callable[[], Any]) -> None:
        self._current = current
        self._seen: Any = None
        self._generation = 0

    def __call__(self) -> int:
        current = self._current()
        if current is not self._seen:
            self._seen = current
            self._generation += 1
        return self._generation
