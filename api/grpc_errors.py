"""One place that turns engine errors into gRPC statuses, so no trace reaches a client."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from pyserving.engine.errors import ServingError

log = structlog.get_logger("pyserving.api")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def status_code(error: ServingError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code.name]


def grpc_method(handler: Handler) -> Handler:
    """Wrap an async servicer method: ServingError → its status; anything else → INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except ServingError as exc:
            await context.abort(status_code(exc), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("request_failed", method=handler.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error in {handler.__name__}; the server log has the details",
            )

    return wrapper  # type: ignore[return-value]
