"""OpenTelemetry traces of requests, batches, loads and unloads (`pyserving[otel]`).

Imported only when the OTEL_* variables turn traces on (adapters/tracing.py). The SDK
reads its own configuration: `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*`, `OTEL_PROPAGATORS`.

The span tree of a request (the request span is the caller's child when it sent a W3C
`traceparent`, in gRPC metadata or an HTTP header):

    <api> (SERVER: model, version, its fingerprint, signature, protocol, status)
    ├── decode   arrival → the plan reaches the runner (parse, checks, tensor decoding)
    ├── queue    with --enable_batching: enqueued → its batch's model run starts
    ├── run      the model call; with batching one span per batch, the child of the batch's
    │            first traced request, LINKED to every traced request it served
    └── encode   the runner's answer → the reply is built

Spans are made after the fact with the times recorded (children from any thread need no
context switching); a request the sampler drops gets no trace object, so below the
envelope it costs one context-variable lookup. Loads and unloads are spans of their own
(from the lifecycle events), always recorded: they are rare and each matters.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

import grpc
import numpy as np
import structlog
from opentelemetry import propagate
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

import pyserving
from pyserving.adapters.tracing import TracingConfigError
from pyserving.engine.events import (
    Event,
    LoadFailed,
    LoadSucceeded,
    Transition,
    WarmupFinished,
)
from pyserving.engine.request_scope import RequestScope
from pyserving.engine.runner import ModelCall
from pyserving.engine.servable_id import ServableId
from pyserving.engine.servable_map import ServableHandle

log = structlog.get_logger("pyserving.tracing")

INSTRUMENTATION = "pyserving"
OTLP_PROTOCOL = "http/protobuf"

# Attribute names (pyserving's own namespace; rpc.* from OpenTelemetry's conventions).
MODEL, VERSION, SIGNATURE = "pyserving.model", "pyserving.model.version", "pyserving.signature"
API, PROTOCOL, STATUS = "pyserving.api", "pyserving.protocol", "pyserving.status_code"
REQUEST_ID, OUTCOME = "pyserving.request_id", "pyserving.outcome"
FINGERPRINT = "pyserving.model.fingerprint"  # adapters/loaders/provenance.py's forms


class RequestTrace:
    """One recorded request: its span and the times its phases started and ended (ns)."""

    __slots__ = (
        "context",
        "decoded_ns",
        "fingerprint",
        "protocol",
        "queued_ns",
        "ran_ns",
        "runs",
        "signature",
        "span",
        "started_ns",
        "token",
        "version",
    )

    def __init__(self, span: trace_api.Span, started_ns: int, protocol: str) -> None:
        self.span = span
        self.context = trace_api.set_span_in_context(span)
        self.started_ns = started_ns
        self.protocol = protocol
        self.decoded_ns = 0  # the first model call was handed to the runner
        self.queued_ns = 0  # the latest model call was handed to the runner
        self.ran_ns = 0  # the latest model call returned
        self.runs: list[tuple[int, int]] = []  # unbatched model calls
        self.version: int | None = None
        self.fingerprint = ""
        self.signature = ""
        self.token: Token[RequestTrace | None] | None = None


_ROOT = Context()  # no caller's span: the request starts a trace
# The recorded request running in this context; set and reset by the envelope's begin/end.
_CURRENT: ContextVar[RequestTrace | None] = ContextVar("pyserving_trace", default=None)


class OtelTracer:
    """The `engine.trace_hooks.Tracer` of requests and batches, on an OpenTelemetry tracer."""

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self._tracer = tracer
        self._propagator = propagate.get_global_textmap()  # OTEL_PROPAGATORS
        self._fields = frozenset(self._propagator.fields)  # the headers it reads

    def begin(self, scope: RequestScope, carrier: Any) -> RequestTrace | None:
        try:
            started = time.time_ns()
            parent, protocol = self._parent(carrier)
            span = self._tracer.start_span(
                scope.api, context=parent, kind=SpanKind.SERVER, start_time=started
            )
            if not span.is_recording():
                return None
            trace = RequestTrace(span, started, protocol)
            trace.token = _CURRENT.set(trace)
            return trace
        except Exception:  # tracing must never fail a request
            log.exception("trace_begin_failed")
            return None

    def _parent(self, carrier: Any) -> tuple[Context, str]:
        """The caller's context from gRPC metadata or HTTP headers, and the protocol; the
        propagators run only when one of their headers is there (most calls have none)."""
        fields = self._fields
        if hasattr(carrier, "invocation_metadata"):
            sent = {
                key: value
                for key, value in carrier.invocation_metadata() or ()
                if key in fields and type(value) is str
            }
            return (self._propagator.extract(sent) if sent else _ROOT), "grpc"
        if carrier is None:
            return _ROOT, ""
        if any(field in carrier for field in fields):
            return self._propagator.extract(carrier), "rest"
        return _ROOT, "rest"

    def end(self, trace: RequestTrace, scope: RequestScope, code: str) -> None:
        if trace.token is not None:
            _CURRENT.reset(trace.token)
        ended = time.time_ns()
        if trace.decoded_ns:
            self._child("decode", trace, trace.started_ns, trace.decoded_ns)
        for started, finished in trace.runs:
            self._child("run", trace, started, finished)
        if trace.ran_ns:
            self._child("encode", trace, trace.ran_ns, ended)
        span = trace.span
        span.update_name(scope.api)  # REST learns its api once the path is parsed
        attributes: dict[str, Any] = {
            MODEL: scope.model,
            API: scope.api,
            PROTOCOL: trace.protocol,
            STATUS: code,
            REQUEST_ID: scope.request_id,
        }
        if trace.version is not None:
            attributes[VERSION] = trace.version
            attributes[SIGNATURE] = trace.signature
            if trace.fingerprint:
                attributes[FINGERPRINT] = trace.fingerprint
        if trace.protocol == "grpc":
            attributes["rpc.system"] = "grpc"
            attributes["rpc.grpc.status_code"] = grpc.StatusCode[code].value[0]
        span.set_attributes(attributes)
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
        span.end(end_time=ended)

    def current(self) -> RequestTrace | None:
        return _CURRENT.get()

    def carrier(self, trace: RequestTrace) -> list[Any]:
        # Hex: a trace id has 128 bits, more than msgpack's integers.
        context = trace.span.get_span_context()
        return [f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags)]

    def adopt(self, carrier: list[Any]) -> RequestTrace:
        trace_id, span_id, flags = carrier
        remote = SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(flags)
        )
        trace = RequestTrace(NonRecordingSpan(remote), time.time_ns(), "")
        trace.token = _CURRENT.set(trace)
        return trace

    def release(self, trace: RequestTrace) -> list[Any]:
        if trace.token is not None:
            _CURRENT.reset(trace.token)
        for started, finished in trace.runs:  # unbatched: batches made theirs already
            self._child("run", trace, started, finished)
        return [trace.decoded_ns, trace.ran_ns, trace.version, trace.signature, trace.fingerprint]

    def answered(self, trace: RequestTrace, times: list[Any]) -> None:
        decoded_ns, ran_ns, version, signature, fingerprint = times
        if decoded_ns and not trace.decoded_ns:
            trace.decoded_ns = int(decoded_ns)
        if ran_ns:
            trace.ran_ns = int(ran_ns)
        if version is not None:
            trace.version, trace.signature = int(version), str(signature)
            trace.fingerprint = str(fingerprint)

    def batch_run(
        self,
        traces: Sequence[RequestTrace | None],
        model: str,
        version: int,
        signature: str,
        started_ns: int,
        ended_ns: int,
        size: int,
        padded_size: int,
        error: str,
    ) -> None:
        traced = list({id(t): t for t in traces if t is not None}.values())
        if not traced:
            return
        for trace in traced:
            self._child("queue", trace, trace.queued_ns or started_ns, started_ns)
        run = self._tracer.start_span(
            "run",
            context=traced[0].context,
            links=[Link(trace.span.get_span_context()) for trace in traced],
            start_time=started_ns,
            attributes={
                MODEL: model,
                VERSION: version,
                SIGNATURE: signature,
                "pyserving.batch.size": size,
                "pyserving.batch.padded_size": padded_size,
                "pyserving.batch.requests": len(traces),
            },
        )
        if error:
            run.set_status(Status(StatusCode.ERROR, error))
        run.end(end_time=ended_ns)

    def _child(self, name: str, trace: RequestTrace, started_ns: int, ended_ns: int) -> None:
        span = self._tracer.start_span(name, context=trace.context, start_time=started_ns)
        span.end(end_time=max(started_ns, ended_ns))


class TracedRunner:
    """A Runner that notes, for a recorded request, when each model call starts and ends
    (decode ends at the first; encode starts after the last). Installed only when traces
    are on; an unrecorded request passes straight through."""

    def __init__(self, inner: Any, batched: bool) -> None:
        self._inner = inner
        self._batched = batched  # the batching scheduler makes the run (and queue) spans

    async def run(
        self, handle: ServableHandle, call: ModelCall, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        trace = _CURRENT.get()
        if trace is None:
            return await self._inner.run(handle, call, deadline)
        queued = time.time_ns()
        if not trace.decoded_ns:
            trace.decoded_ns = queued
        trace.queued_ns = queued
        trace.version, trace.signature = handle.version, call.signature
        trace.fingerprint = handle.fingerprint
        try:
            return await self._inner.run(handle, call, deadline)
        finally:
            trace.ran_ns = time.time_ns()
            if not self._batched:
                trace.runs.append((queued, trace.ran_ns))

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class LifecycleSpans:
    """Bus subscriber: a span per load and per unload of a version, from its transitions
    (loading → available/error, unloading → end), with failed attempts and warm-up."""

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self._tracer = tracer
        self._open: dict[ServableId, trace_api.Span] = {}

    def __call__(self, event: Event) -> None:
        try:
            self._handle(event)
        except Exception:  # tracing must never stop the bus
            log.exception("lifecycle_trace_failed", kind=event.kind)

    def _handle(self, event: Event) -> None:
        at = int(event.time * 1e9)
        if isinstance(event, Transition):
            key = event.servable_id
            if event.src in ("loading", "unloading"):
                span = self._open.pop(key, None)
                if span is not None:
                    span.set_attribute(OUTCOME, event.dst)
                    if event.reason:
                        span.set_attribute("pyserving.reason", event.reason)
                    if event.dst == "error":
                        span.set_status(Status(StatusCode.ERROR, event.reason or "load failed"))
                    span.end(end_time=at)
            if event.dst in ("loading", "unloading"):
                self._open[key] = self._tracer.start_span(
                    "load" if event.dst == "loading" else "unload",
                    kind=SpanKind.INTERNAL,
                    start_time=at,
                    attributes={MODEL: event.model, VERSION: event.version},
                )
        elif isinstance(event, LoadSucceeded) and event.fingerprint:
            span = self._open.get(event.servable_id)
            if span is not None:
                span.set_attribute(FINGERPRINT, event.fingerprint)
        elif isinstance(event, LoadFailed):
            span = self._open.get(event.servable_id)
            if span is not None:
                span.add_event(
                    "load_attempt_failed",
                    {"attempt": event.attempt, "error": event.error[:1000]},
                    timestamp=at,
                )
        elif isinstance(event, WarmupFinished):
            load = self._open.get(event.servable_id)
            if load is not None:
                warmup = self._tracer.start_span(
                    "warmup",
                    context=trace_api.set_span_in_context(load),
                    start_time=at - int(event.duration_s * 1e9),
                    attributes={"pyserving.warmup.records": event.records},
                )
                if event.error:
                    warmup.set_status(Status(StatusCode.ERROR, event.error[:1000]))
                warmup.end(end_time=at)


def _exporters(environ: Mapping[str, str]) -> list[SpanProcessor]:
    names = [
        n.strip().lower()
        for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if n.strip()
    ]
    processors: list[SpanProcessor] = []
    for name in names:
        if name == "otlp":
            protocol = environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
            ).strip()
            if protocol and protocol != OTLP_PROTOCOL:
                raise TracingConfigError(
                    f"OTLP protocol {protocol!r} is not supported: pyserving[otel] exports OTLP "
                    f"over HTTP; set OTEL_EXPORTER_OTLP_PROTOCOL={OTLP_PROTOCOL} (port 4318)"
                )
            exporter: SpanExporter = OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_*
            processors.append(BatchSpanProcessor(exporter))  # OTEL_BSP_*
        elif name == "console":
            processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported: use otlp (OTLP over HTTP), "
                "console, or none"
            )
    return processors


class OtelTracing:
    """The tracers the composition root wires in, and their shutdown (which flushes)."""

    def __init__(self, processors: Sequence[SpanProcessor], resource: Resource) -> None:
        self._providers = [
            TracerProvider(resource=resource, shutdown_on_exit=False),  # OTEL_TRACES_SAMPLER
            TracerProvider(resource=resource, sampler=ALWAYS_ON, shutdown_on_exit=False),
        ]
        for provider in self._providers:
            for processor in processors:
                provider.add_span_processor(processor)
        self._processors = list(processors)
        version = pyserving.__version__
        self.requests = OtelTracer(self._providers[0].get_tracer(INSTRUMENTATION, version))
        self.lifecycle = LifecycleSpans(self._providers[1].get_tracer(INSTRUMENTATION, version))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> OtelTracing:
        resource = Resource.create({SERVICE_VERSION: pyserving.__version__})
        if not environ.get("OTEL_SERVICE_NAME") and str(
            resource.attributes.get(SERVICE_NAME, "")
        ).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "pyserving"}))
        tracing = cls(_exporters(environ), resource)
        log.info(
            "tracing_enabled",
            service_name=resource.attributes.get(SERVICE_NAME),
            sampler=environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            sampler_arg=environ.get("OTEL_TRACES_SAMPLER_ARG"),
        )
        return tracing

    def runner(self, inner: Any, batched: bool) -> TracedRunner:
        return TracedRunner(inner, batched)

    def flush(self, timeout_ms: int = 30000) -> None:
        """Export what is buffered now (the bench: no round pays for the one before)."""
        for processor in self._processors:
            processor.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Export what is still buffered (a processor is shared: shut down once)."""
        for processor in self._processors:
            processor.shutdown()
