"""grpc.health.v1.Health: SERVING once every configured model has an available version.

Status is computed from the serving map when asked, so it can never lag behind it.
The empty service name means the whole server, as the health-checking spec says; a model
name may be asked for too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

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

    def status(self, service: str) -> int | None:
        """The status of `service` (a model name or ""), or None if it is unknown."""
        available = self._map.snapshot
        if service == "":
            ready = not self.shutting_down and all(m in available for m in self._models())
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
