"""A request that does not parse is the client's error: INVALID_ARGUMENT, not UNKNOWN.

grpc runs a method's request deserializer before any handler, and when it raises (a
truncated message, invalid UTF-8 in a string field, which protobuf refuses) grpc
answers UNKNOWN with the Python exception's text. This interceptor wraps each unary
method's deserializer so that the failure reaches a handler that answers
INVALID_ARGUMENT, naming the message type and what was wrong with it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes did not parse."""

    error: str


def _guarded(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def guarded(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser raises
            return Undecodable(str(exc).split("\n")[0][:500] or type(exc).__name__)

    return guarded


class DecodeGuard(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary
        method = handler_call_details.method

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request to {method} could not be parsed: {request.error}",
                )
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=_guarded(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
