"""Traces: when the OTEL_* variables turn them on, and the spans the request path makes.

The request envelope, the runners and the batching scheduler run for real with the
OpenTelemetry SDK's in-memory exporter; tests/e2e/test_tracing_e2e.py does the same
against a real server and an OTLP receiver.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import numpy as np
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pyserving.adapters.otel_tracer import LifecycleSpans, OtelTracing
from pyserving.adapters.tracing import (
    TracingConfigError,
    tracing_from_environment,
    tracing_requested,
)
from pyserving.api.envelope.request_envelope import Envelope
from pyserving.engine.batching import BatchingRunner
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import ServingError
from pyserving.engine.events import LoadFailed, LoadSucceeded, Transition
from pyserving.engine.request_scope import RequestScope
from pyserving.engine.runner import DirectRunner, ModelCall
from pyserving.engine.servable_map import ServableHandle
from tests.servables import SIG, WAIT_S, RecordingServable
from tests.util.processes import run_python
from tests.util.waiting import eventually_async

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_traces_are_on_only_when_the_variables_say_where_they_go(
    environ: dict[str, str], on: bool
) -> None:
    assert tracing_requested(environ) is on


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        ),
    ],
)
def test_what_cannot_be_exported_is_refused_with_what_to_set(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(TracingConfigError, match=message):
        tracing_from_environment(environ)


def test_without_otel_variables_the_server_sets_up_no_tracer() -> None:
    """A real ModelServer built with no OTEL_* variables: no tracer anywhere, and nothing
    of OpenTelemetry even imported (a fresh interpreter, so this test's imports don't count)."""
    code = (
        "import sys\n"
        "from pyserving.api.cli import build_parser\n"
        "from pyserving.api.flags import server_options\n"
        "from pyserving.api.server import ModelServer\n"
        "ns = build_parser().parse_args(['serve', '--model_name=m', '--model_base_path=/none',"
        " '--enable_batching'])\n"
        "server = ModelServer(server_options(ns))\n"
        "assert server.tracing is None and server.envelope.tracer is None\n"
        "assert server.runner.tracer is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    unset_otel = {k: None for k in os.environ if k.startswith("OTEL_")}
    result = run_python("-c", code, env=unset_otel, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def traced() -> tuple[OtelTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return OtelTracing([SimpleSpanProcessor(exporter)], Resource.create({})), exporter


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    own = parent.context.span_id
    return {s.name: s for s in spans if s.parent is not None and s.parent.span_id == own}


def test_an_unbatched_request_has_decode_run_encode_children_in_the_callers_trace() -> None:
    tracing, exporter = traced()
    envelope = Envelope(tracer=tracing.requests)
    runner = tracing.runner(DirectRunner(1), batched=False)
    handle = ServableHandle("m", 3, RecordingServable(), "sha256:ab12")

    async def work() -> dict[str, np.ndarray]:
        return await runner.run(handle, ModelCall(SIG, {"x": np.ones((2, 2), np.float32)}, ()))

    scope = RequestScope("rest_predict", "m", lambda: "req-1")
    outputs = asyncio.run(envelope.run(scope, work, carrier={"traceparent": TRACEPARENT}))
    np.testing.assert_array_equal(outputs["y"], np.full((2, 2), 2.0))
    runner.close()
    spans = exporter.get_finished_spans()
    [request] = by_name(spans)["rest_predict"]
    assert request.kind == SpanKind.SERVER
    assert f"{request.context.trace_id:032x}" == CALLER_TRACE
    assert request.parent is not None and f"{request.parent.span_id:016x}" == CALLER_SPAN
    assert request.attributes is not None
    assert dict(request.attributes) == {
        "pyserving.model": "m",
        "pyserving.api": "rest_predict",
        "pyserving.protocol": "rest",
        "pyserving.status_code": "OK",
        "pyserving.request_id": "req-1",
        "pyserving.model.version": 3,
        "pyserving.model.fingerprint": "sha256:ab12",
        "pyserving.signature": SIG,
    }
    kids = children(spans, request)
    assert set(kids) == {"decode", "run", "encode"}  # no queue without batching
    assert kids["decode"].start_time == request.start_time
    assert kids["decode"].end_time == kids["run"].start_time
    assert kids["run"].end_time == kids["encode"].start_time
    assert kids["encode"].end_time == request.end_time
    assert len(spans) == 4


def test_across_processes_the_engine_runs_under_the_frontends_request_span() -> None:
    """--workers: the front-end's tracer records the request, the engine's (another
    tracer, another process in the server) adopts it from the carrier for the model call:
    the tree is the in-process one, run made by the engine, decode and encode by the
    front-end with the engine's times."""
    exporter = InMemorySpanExporter()
    frontend, engine = (
        OtelTracing([SimpleSpanProcessor(exporter)], Resource.create({})) for _ in range(2)
    )
    envelope = Envelope(tracer=frontend.requests)
    runner = engine.runner(DirectRunner(1), batched=False)
    handle = ServableHandle("m", 3, RecordingServable())

    async def engine_side(carrier: list) -> tuple[dict[str, np.ndarray], list]:
        before = engine.requests.current()  # here, the front-end's: one process in the test
        trace = engine.requests.adopt(carrier)
        outputs = await runner.run(handle, ModelCall(SIG, {"x": np.ones((2, 2), np.float32)}, ()))
        times = engine.requests.release(trace)
        assert engine.requests.current() is before
        return outputs, times

    async def work() -> dict[str, np.ndarray]:
        trace = frontend.requests.current()
        outputs, times = await engine_side(frontend.requests.carrier(trace))
        frontend.requests.answered(trace, times)
        return outputs

    scope = RequestScope("Predict", "m", lambda: "req-1")
    asyncio.run(envelope.run(scope, work, carrier={"traceparent": TRACEPARENT}))
    runner.close()
    spans = exporter.get_finished_spans()
    [request] = by_name(spans)["Predict"]
    assert request.attributes is not None
    assert request.attributes["pyserving.model.version"] == 3
    kids = children(spans, request)
    assert set(kids) == {"decode", "run", "encode"}
    assert kids["decode"].start_time == request.start_time
    assert kids["decode"].end_time == kids["run"].start_time
    assert kids["run"].end_time == kids["encode"].start_time
    assert kids["encode"].end_time == request.end_time
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}
    assert len(spans) == 4


def test_a_failed_request_span_carries_its_code() -> None:
    tracing, exporter = traced()
    envelope = Envelope(tracer=tracing.requests)

    async def work() -> None:
        from pyserving.engine.errors import not_found

        raise not_found("no such model")

    with pytest.raises(ServingError):
        asyncio.run(envelope.run(RequestScope("Predict", "x", lambda: None), work))
    [request] = exporter.get_finished_spans()
    assert request.status.status_code == StatusCode.ERROR
    assert request.attributes is not None
    assert request.attributes["pyserving.status_code"] == "NOT_FOUND"
    assert "pyserving.model.version" not in request.attributes  # never reached a version


def test_an_unsampled_request_gets_no_trace_and_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # read by the SDK's provider
    tracing, exporter = traced()
    envelope = Envelope(tracer=tracing.requests)
    seen: list[object] = []

    async def work() -> None:
        seen.append(tracing.requests.current())

    asyncio.run(envelope.run(RequestScope("Predict", "m", lambda: None), work))
    assert seen == [None]
    assert exporter.get_finished_spans() == ()


def test_one_run_span_per_batch_links_every_traced_request_it_served() -> None:
    tracing, exporter = traced()
    envelope = Envelope(tracer=tracing.requests)
    servable = RecordingServable()
    batching = BatchingRunner(
        BatchingOptions(num_batch_threads=1, max_batch_size=16), tracer=tracing.requests
    )
    runner = tracing.runner(batching, batched=True)
    handle = ServableHandle("m", 1, servable)

    async def predict(rows: int) -> dict[str, np.ndarray]:
        return await runner.run(handle, ModelCall(SIG, {"x": np.ones((rows, 2), np.float32)}, ()))

    async def scenario() -> None:
        # An untraced request holds the only batch thread; three traced ones queue behind it.
        servable.gate.clear()
        servable.running.clear()
        blocker = asyncio.create_task(predict(1))
        assert await asyncio.to_thread(servable.running.wait, WAIT_S)
        requests = [
            asyncio.create_task(
                envelope.run(RequestScope("Predict", "m", lambda: None), predict, n)
            )
            for n in (1, 2, 3)
        ]
        await eventually_async(
            lambda: sum(batching.queue_depths().values()) >= 3, WAIT_S, message="3 queued"
        )
        servable.gate.set()
        await blocker
        for task, n in zip(requests, (1, 2, 3), strict=True):
            assert (await task)["y"].shape == (n, 2)

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S * 3))
    batching.close()
    assert [len(b) for b in servable.batches] == [1, 6]
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    [run] = named["run"]  # the blocker's batch had no traced request: no span
    requests = named["Predict"]
    assert len(requests) == 3
    assert {link.context.span_id for link in run.links} == {r.context.span_id for r in requests}
    assert run.parent is not None
    assert run.parent.span_id in {r.context.span_id for r in requests}
    assert run.attributes is not None
    assert run.attributes["pyserving.batch.size"] == 6
    assert run.attributes["pyserving.batch.requests"] == 3
    for request in requests:
        kids = children(spans, request)
        assert {"decode", "queue", "encode"} <= set(kids)
        assert kids["queue"].end_time == run.start_time
        # ignored below: span times are Optional until ended
        assert run.end_time <= kids["encode"].start_time  # type: ignore[operator]


def test_a_failed_load_is_a_span_with_its_attempts() -> None:
    tracing, exporter = traced()
    spans = tracing.lifecycle
    assert isinstance(spans, LifecycleSpans)
    spans(
        Transition(model="m", version=4, src="new", dst="loading", trigger="start_load", time=10.0)
    )
    spans(LoadFailed(model="m", version=4, error="bad graph", attempt=1, will_retry=False,
                     duration_s=0.5, time=10.5))  # fmt: skip
    spans(Transition(model="m", version=4, src="loading", dst="error", trigger="load_failed",
                     reason="bad graph", time=11.0))  # fmt: skip
    [load] = exporter.get_finished_spans()
    assert load.name == "load"
    assert (load.start_time, load.end_time) == (10_000_000_000, 11_000_000_000)
    assert load.status.status_code == StatusCode.ERROR
    assert load.attributes is not None
    assert load.attributes["pyserving.outcome"] == "error"
    assert [e.name for e in load.events] == ["load_attempt_failed"]


def test_a_loaded_versions_span_names_its_fingerprint() -> None:
    tracing, exporter = traced()
    spans = tracing.lifecycle
    spans(Transition(model="m", version=5, src="new", dst="loading", trigger="start_load"))
    spans(LoadSucceeded(model="m", version=5, duration_s=0.5, fingerprint="saved_model:1/2/3/4"))
    spans(Transition(model="m", version=5, src="loading", dst="available", trigger="load_ok"))
    [load] = exporter.get_finished_spans()
    assert load.attributes is not None
    assert load.attributes["pyserving.model.fingerprint"] == "saved_model:1/2/3/4"


def test_a_front_end_tells_its_request_span_the_answering_version() -> None:
    tracing, exporter = traced()
    envelope = Envelope(tracer=tracing.requests)

    async def work() -> None:  # the remote data plane's part, in a front-end process
        trace = tracing.requests.current()
        # What the engine's `release` sends back: decode end, run end, version, signature,
        # fingerprint (the runner noted them in the engine).
        tracing.requests.answered(trace, [0, 0, 2, SIG, "saved_model:1/2/3/4"])

    asyncio.run(envelope.run(RequestScope("Predict", "m", lambda: None), work))
    [request] = exporter.get_finished_spans()
    assert request.attributes is not None
    assert request.attributes["pyserving.model.version"] == 2
    assert request.attributes["pyserving.model.fingerprint"] == "saved_model:1/2/3/4"
