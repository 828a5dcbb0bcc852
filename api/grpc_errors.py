"""One place every gRPC call passes through: engine errors become gRPC statuses (no trace
reaches a client), each request gets a request id bound to its log lines, and each
finished request is reported to the server's request observer (metrics)."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from pyserving.engine.errors import ServingError

log = structlog.get_logger("pyserving.api")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

# (model name as requested, api, gRPC status code name, seconds) for each finished request.
RequestObserver = Callable[[str, str, str, float], None]
_OBSERVER_ATTRIBUTE = "_pyserving_request_observer"

REQUEST_ID_METADATA = "x-request-id"
_CLEAN_REQUEST_ID = re.compile(r"[^A-Za-z0-9._:-]")


def attach_request_observer(servicer: object, observer: RequestObserver) -> None:
    """Report every request `servicer`'s `grpc_method`s finish to `observer`."""
    setattr(servicer, _OBSERVER_ATTRIBUTE, observer)


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The client's `x-request-id` metadata (cleaned, at most 64 chars), or a fresh id."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA and isinstance(value, str):
            cleaned = _CLEAN_REQUEST_ID.sub("", value)[:64]
            if cleaned:
                return cleaned
    return uuid.uuid4().hex[:16]


def requested_model(request: Any) -> str:
    """The model a TF Serving request names (`model_spec.name`), or "" if it names none."""
    spec = getattr(request, "model_spec", None)
    return str(getattr(spec, "name", "")) if spec is not None else ""


def status_code(error: ServingError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code.name]


def grpc_method(handler: Handler) -> Handler:
    """Wrap an async servicer method: ServingError → its status; anything else → INTERNAL.

    Binds `request_id`, `api` and `model` to the log context for the request's duration
    (one asyncio task per RPC, so contextvars keep concurrent requests apart).
    """
    api = handler.__name__

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        model = requested_model(request)
        code = grpc.StatusCode.OK
        with structlog.contextvars.bound_contextvars(
            request_id=request_id(context), api=api, model=model
        ):
            try:
                return await handler(self, request, context)
            except ServingError as exc:
                code = status_code(exc)
                await context.abort(code, exc.message)
            except grpc.aio.AbortError:
                code = _aborted_code(context)
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("request_failed")
                await context.abort(
                    code, f"internal error in {api}; the server log has the details"
                )
            finally:
                seconds = time.perf_counter() - started
                log.debug("request_finished", code=code.name, seconds=round(seconds, 6))
                observer: RequestObserver | None = getattr(self, _OBSERVER_ATTRIBUTE, None)
                if observer is not None:
                    try:
                        observer(model, api, code.name, seconds)
                    except Exception:  # metrics must never fail a request
                        log.exception("request_observer_failed")

    return wrapper  # type: ignore[return-value]


def _aborted_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The code a handler aborted with itself (UNKNOWN where grpc cannot say)."""
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        return grpc.StatusCode.UNKNOWN
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
