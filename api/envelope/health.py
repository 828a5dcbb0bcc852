"""grpc.health.v1.Health: the engine's answer (engine/server_health.py), ANDed with this
process's own drain.

The engine says whether every configured model has an available version; a process that
stops accepting requests (`shutting_down`) answers NOT_SERVING whatever the engine says,
so a load balancer stops sending to it before it goes. An engine that cannot answer
(gone: UNAVAILABLE) is NOT_SERVING too, not an error: a probe must simply fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import ServingError

HealthCheckResponse = health_pb2.HealthCheckResponse


class HealthService(health_pb2_grpc.HealthServicer):
    def __init__(self, plane: DataPlane, watch_interval_s: float = 0.25) -> None:
        self._plane = plane
        self._watch_interval_s = watch_interval_s
        self.shutting_down = False

    async def status(self, service: str) -> int | None:
        """The status of `service` (a model name or ""), or None if it is unknown."""
        try:
            status = await self._plane.health(service)
        except ServingError:
            return HealthCheckResponse.NOT_SERVING
        if status is not None and self.shutting_down:
            return HealthCheckResponse.NOT_SERVING
        return status

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = await self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = await self.status(request.service)
            if status is None:
                status = HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self._watch_interval_s)
