"""The request envelope: what every request passes through once, whatever its protocol.

Drain (from the stop signal on, a request is answered UNAVAILABLE unrun; those already
being handled finish), request id and log context (`RequestScope`, read only when a line
is written), the REST deadline, error-to-status mapping (a ServingError keeps its code;
anything else becomes INTERNAL with no trace to the client), the access log line, the
request metrics (their children looked up once per model and api, not per request) and,
when a `Tracer` is given (OTEL_* variables, see adapters/tracing.py), the request's span.

`Envelope.run` is protocol-free; `add_service` puts gRPC servicers behind it (one
wrapper per method, no interceptors: grpc.aio runs those on every call), and the REST
handler calls it directly. Both map the same ServingError the same way: its gRPC code,
or TF Serving's HTTP status for it (http_server.cc, ToHTTPStatusCode).

Why drain before grpc's own stop: `server.stop(grace)` cancels every call the transport
has received but not yet handed to a handler, and their clients cannot tell whether the
request ran. grpc is stopped only once no call is being handled and none has arrived for
a short quiet period, so requests still on the wire get UNAVAILABLE, not CANCELLED.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
import structlog
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from pyserving.engine.errors import MESSAGE_LIMIT, Code, ServingError, invalid_argument, quoted
from pyserving.engine.request_scope import CURRENT, RequestScope
from pyserving.engine.trace_hooks import Tracer

log = structlog.get_logger("pyserving.api")

T = TypeVar("T")

REQUEST_ID_METADATA = "x-request-id"
DRAINING_MESSAGE = (
    "the server is shutting down; the request was not run, retry it on another replica"
)

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def http_status(error: ServingError) -> int:
    """The HTTP status REST answers for `error` (an error may name its own, e.g. 413)."""
    return getattr(error, "http_status", None) or HTTP_STATUS.get(error.code.name, 500)


def grpc_status(error: ServingError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code.name]


class RequestSeries(Protocol):
    """The metric children of one (model, api): `observe` counts one finished request."""

    cacheable: bool  # False: look it up again next time (e.g. a model not yet configured)

    def observe(self, code: str, seconds: float) -> None: ...


SeriesFactory = Callable[[str, str], RequestSeries]
# (model name as requested, api, status code name, seconds) for each finished request.
RequestObserver = Callable[[str, str, str, float], None]


class _Forwarded:
    __slots__ = ("_api", "_model", "_observe")
    cacheable = True

    def __init__(self, observe: RequestObserver, model: str, api: str) -> None:
        self._observe, self._model, self._api = observe, model, api

    def observe(self, code: str, seconds: float) -> None:
        self._observe(self._model, self._api, code, seconds)


def observer_series(observe: RequestObserver) -> SeriesFactory:
    """Series that hand each finished request to one plain callable."""
    return lambda model, api: _Forwarded(observe, model, api)


class SeriesCache:
    """Each (model, api)'s series, made once (unless it says not to cache it): what the
    envelope counts every request with, and what the engine counts its front-ends'
    requests with (the `observe` they send)."""

    def __init__(self, series_for: SeriesFactory) -> None:
        self._series_for = series_for
        self._series: dict[tuple[str, str], RequestSeries] = {}

    def observe(self, model: str, api: str, code: str, seconds: float) -> None:
        key = (model, api)
        series = self._series.get(key)
        if series is None:
            series = self._series_for(model, api)
            if series.cacheable:
                self._series[key] = series
        series.observe(code, seconds)


class Envelope:
    """One per server, shared by every protocol; see the module docstring."""

    def __init__(self, series: SeriesFactory | None = None, tracer: Tracer | None = None) -> None:
        self.draining = False
        self._series = None if series is None else SeriesCache(series)
        self.tracer = tracer  # None: traces are off (one check per request)
        self._active = 0
        self._last_arrival = 0.0

    # ------------------------------------------------------------------ drain
    @property
    def active(self) -> int:
        return self._active

    def start_draining(self) -> None:
        self.draining = True

    async def wait_quiet(self, timeout_s: float, quiet_s: float = 0.5) -> bool:
        """After `start_draining`: wait until no request is being handled and none has
        arrived for `quiet_s`; False if `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        while self._active > 0 or time.monotonic() - self._last_arrival < quiet_s:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # ------------------------------------------------------------------ requests
    async def run(
        self,
        scope: RequestScope,
        work: Callable[..., Awaitable[T]],
        *args: Any,
        timeout_s: float | None = None,
        timeout_flag: str = "",
        carrier: Any = None,
    ) -> T:
        """`await work(*args)` inside the envelope. Raises only ServingError (its code is
        what the client gets); `timeout_s` is enforced here (REST), gRPC enforces its own.
        `carrier` (gRPC context or HTTP headers) is read only by a tracer, for traceparent."""
        token = CURRENT.set(scope)
        trace = None if self.tracer is None else self.tracer.begin(scope, carrier)
        started = time.perf_counter()
        self._last_arrival = time.monotonic()
        code = "OK"
        try:
            if self.draining:
                raise ServingError(Code.UNAVAILABLE, DRAINING_MESSAGE)
            self._active += 1
            try:
                if timeout_s is None:
                    return await work(*args)
                async with asyncio.timeout(timeout_s) as timer:
                    return await work(*args)
            except TimeoutError:
                if timeout_s is None or not timer.expired():
                    raise
                raise ServingError(
                    Code.DEADLINE_EXCEEDED,
                    f"Deadline exceeded: no answer within {timeout_s * 1000:.0f} ms "
                    f"({timeout_flag or 'the request deadline'})",
                ) from None
            finally:
                self._active -= 1
        except ServingError as exc:
            code = exc.code.name
            # The access log's line for a refused request: what the client was told, and why.
            log.info(
                "request_rejected",
                code=code,
                http_status=http_status(exc),
                reason=quoted(exc.message, MESSAGE_LIMIT),
            )
            # The frames of a failed request hold its inputs (a refused 100 MB tensor, a
            # closure's cell), and grpc keeps the error in a reference cycle that only the
            # garbage collector frees, many requests later (measured: 350 MB kept after
            # six refused ones). A client's error needs no traceback: drop those frames.
            raise exc.with_traceback(None)  # noqa: B904 - the same error, not a new one
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            code = "INTERNAL"
            log.exception("request_failed")
            exc.with_traceback(None)  # logged; the reply's error must not keep its frames
            raise ServingError(
                Code.INTERNAL, f"internal error in {scope.api}; the server log has the details"
            ) from None
        finally:
            seconds = time.perf_counter() - started
            log.debug("request_finished", code=code, seconds=round(seconds, 6))
            self._observe(scope, code, seconds)
            if trace is not None and self.tracer is not None:
                self._end_trace(self.tracer, trace, scope, code)
            CURRENT.reset(token)

    def _end_trace(self, tracer: Tracer, trace: Any, scope: RequestScope, code: str) -> None:
        try:
            tracer.end(trace, scope, code)
        except Exception:  # tracing must never fail a request
            log.exception("request_trace_failed")

    def _observe(self, scope: RequestScope, code: str, seconds: float) -> None:
        if self._series is None:
            return
        try:
            self._series.observe(scope.model, scope.api, code, seconds)
        except Exception:  # metrics must never fail a request
            log.exception("request_observer_failed")


# ---------------------------------------------------------------------- gRPC side
@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes did not parse (grpc would answer UNKNOWN)."""

    method: str
    error: str


def guarded(method: str, deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A request deserializer that hands a parse failure to the handler, so the envelope
    answers INVALID_ARGUMENT naming what was wrong (and counts it)."""

    def guarded_deserialize(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser raises
            return Undecodable(method, str(exc).split("\n")[0][:500] or type(exc).__name__)

    return guarded_deserialize


async def _refuse_undecodable(
    request: Undecodable, context: grpc.aio.ServicerContext[Any, Any]
) -> Any:
    raise invalid_argument(f"the request to {request.method} could not be parsed: {request.error}")


def requested_model(request: Any) -> str:
    """The model a request names, or "" if it names none: TF Serving's `model_spec.name`,
    the Open Inference Protocol's `model_name` (ModelInfer) or `name` (ModelReady, ...)."""
    spec = getattr(request, "model_spec", None)
    if spec is not None:
        return str(getattr(spec, "name", ""))
    name = getattr(request, "model_name", None)
    if name is None:
        name = getattr(request, "name", "")
    return name if isinstance(name, str) else ""


def _metadata_request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA and isinstance(value, str):
            return value
    return None


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def grpc_behavior(envelope: Envelope, api: str, handler: Behavior) -> Behavior:
    """A unary method's handler inside the envelope; errors become the call's status."""

    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        work = handler
        if type(request) is Undecodable:
            work, model = _refuse_undecodable, ""
        else:
            model = requested_model(request)
        scope = RequestScope(api, model, lambda: _metadata_request_id(context))
        try:
            return await envelope.run(scope, work, request, context, carrier=context)
        except ServingError as exc:
            # Cut, so a message quoting a huge client string still reaches the client with
            # its status, not as the client's RESOURCE_EXHAUSTED for oversized metadata.
            await context.abort(grpc_status(exc), quoted(exc.message, MESSAGE_LIMIT))

    return behavior


def method_handler(
    envelope: Envelope,
    method_path: str,
    handler: Behavior,
    deserialize: Callable[[bytes], Any],
    serialize: Callable[[Any], bytes],
) -> grpc.RpcMethodHandler[Any, Any]:
    api = method_path.rsplit("/", 1)[-1]
    return grpc.unary_unary_rpc_method_handler(
        grpc_behavior(envelope, api, handler),
        request_deserializer=guarded(method_path, deserialize),
        response_serializer=serialize,
    )


def add_service(
    server: grpc.aio.Server,
    envelope: Envelope,
    service: ServiceDescriptor,
    servicer: object,
    methods: Collection[str] | None = None,
) -> None:
    """Serve `servicer`'s unary methods of `service` (by its descriptor) behind `envelope`.

    `methods` (names) serves only those: two components can each serve their own methods
    of one service (grpc asks each registered handler in turn); the rest answer
    UNIMPLEMENTED."""
    handlers = {}
    for method in service.methods:
        if methods is not None and method.name not in methods:
            continue
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = method_handler(
            envelope,
            f"/{service.full_name}/{method.name}",
            getattr(servicer, method.name),
            request_class.FromString,
            response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def rpc_deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    """The RPC's deadline on the `time.monotonic()` clock, or None when it has none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
