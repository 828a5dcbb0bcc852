"""Graceful stop without lost requests: refuse new calls cleanly, then wait for the rest.

grpc's own `server.stop(grace)` cancels every call the transport has received but the
server has not yet handed to a handler, and a busy server has many: their clients get
CANCELLED and cannot tell whether the request ran. So the server first *drains*: from
the stop signal on, a call that reaches a handler is answered UNAVAILABLE ("shutting
down", never executed, safe to retry elsewhere), calls already being handled (queued
for a model thread included) finish, and grpc is stopped only once none is left and no
call has arrived for a short quiet period, so that requests still on the wire get their
UNAVAILABLE rather than CANCELLED. A client that re-sends with no pause at all can
keep the server from going quiet; then grpc stops when the grace period ends, and a
request still arriving then may get CANCELLED (it did not run).
Health checks keep answering (NOT_SERVING) while draining.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

# Calls that are not requests for a model: they keep working while draining.
_EXEMPT_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


class DrainGate(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.draining = False
        self._active = 0
        self._last_arrival = 0.0

    @property
    def active(self) -> int:
        return self._active

    def start_draining(self) -> None:
        self.draining = True

    async def wait_quiet(self, timeout_s: float, quiet_s: float = 0.5) -> bool:
        """After `start_draining`: wait until no call is being handled and none has
        arrived for `quiet_s`; False if `timeout_s` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._active > 0 or loop.time() - self._last_arrival < quiet_s:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or method.startswith(_EXEMPT_PREFIXES):
            return handler
        behavior = handler.unary_unary

        async def gated(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._last_arrival = asyncio.get_running_loop().time()
            if self.draining:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "the server is shutting down; the request was not run, retry it on "
                    "another replica",
                )
            self._active += 1
            try:
                return await behavior(request, context)
            finally:
                self._active -= 1

        return grpc.unary_unary_rpc_method_handler(
            gated,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
