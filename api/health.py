"""grpc.health.v1.Health: SERVING once every configured model has an available version.

Status is computed from the serving map when asked, so it can never lag behind it.
The empty service name means the whole server, as the health-checking spec says; a model
name may be asked for too.

Once the server has been ready, a model added later (a config reload, a repository load)
counts towards the whole server's readiness only from its first available version on: a
Kubernetes readiness probe must not take a serving replica out of its Service while it
loads one more model (nor keep it out when that load fails). A counted model that loses
every version makes the server NOT_SERVING again, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyserving.engine.servable_map import ServableMap

HealthCheckResponse = health_pb2.HealthCheckResponse


class HealthService(health_pb2_grpc.HealthServicer):
    def __init__(
        self,
        servable_map: ServableMap,
        models: Callable[[], Sequence[str]],
        watch_interval_s: float = 0.25,
    ) -> None:
        self._map = servable_map
        self._models = models
        self._watch_interval_s = watch_interval_s
        self.shutting_down = False
        self._counted: set[str] | None = None  # None until the server has been ready

    def _server_ready(self, available: Mapping[str, object]) -> bool:
        models = set(self._models())
        if self._counted is None:
            if not models.issubset(available):
                return False
            self._counted = models
        counted = (self._counted & models) | (models & available.keys())
        self._counted = counted
        return counted.issubset(available)

    def status(self, service: str) -> int | None:
        """The status of `service` (a model name or ""), or None if it is unknown."""
        available = self._map.snapshot
        if service == "":
            ready = not self.shutting_down and self._server_ready(available)
        elif service in self._models():
            ready = not self.shutting_down and service in available
        else:
            return None
        return HealthCheckResponse.SERVING if ready else HealthCheckResponse.NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = self.status(request.service)
            if status is None:
                status = HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self._watch_interval_s)
