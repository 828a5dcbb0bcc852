"""OpenTelemetry traces from a real `pyserving serve --enable_batching` to an OTLP receiver.

The receiver (tests/util/otlp.py) decodes what the server's OTLP/HTTP exporter sends with
opentelemetry-proto. Clients send W3C `traceparent`s (gRPC metadata, HTTP header); the
request spans must continue those traces, have decode/queue/encode children, and be linked
from the one run span of the batch that served them. Loads and unloads have spans too.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.e2e.test_batching_e2e import BATCHING_FILE  # requests wait 50 ms for company
from tests.util.otlp import OtlpReceiver, attributes
from tests.util.processes import ServerProcess, free_port, run_python

pytestmark = pytest.mark.e2e

SERVER_SPAN = trace_pb2.Span.SPAN_KIND_SERVER


def traceparent(trace_id: bytes, span_id: bytes) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-01"


def caller_ids(n: int) -> list[tuple[bytes, bytes]]:
    return [(os.urandom(16), os.urandom(8)) for _ in range(n)]


@dataclass
class TracedServer:
    server: ServerProcess
    receiver: OtlpReceiver
    rest_port: int
    images: np.ndarray

    def rest_predict(self, headers: dict[str, str]) -> dict:
        body = json.dumps(
            {"signature_name": "predict_images", "instances": [self.images[0].tolist()]}
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.rest_port}/v1/models/mnist:predict",
            body.encode(),
            {"content-type": "application/json", **headers},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())


def spans_named(spans: list[trace_pb2.Span], name: str) -> list[trace_pb2.Span]:
    return [s for s in spans if s.name == name]


def lifecycle_span(spans: list[trace_pb2.Span], name: str, version: int) -> trace_pb2.Span | None:
    for span in spans_named(spans, name):
        if attributes(span).get("pyserving.model.version") == version:
            return span
    return None


@pytest.fixture(scope="module")
def traced(
    trained_models: TrainedModels,
    tmp_path_factory: pytest.TempPathFactory,
    module_workers: int,
) -> Iterator:
    tmp = tmp_path_factory.mktemp("tracing")
    watched = tmp / "monitored"
    trained_models.copy_version(1, watched)
    batching = tmp / "batching.config"
    batching.write_text(BATCHING_FILE)
    rest_port = free_port()
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "pyserving-under-test",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        server = ServerProcess(
            [
                "--model_name=mnist",
                f"--model_base_path={watched}",
                "--enable_batching",
                f"--batching_parameters_file={batching}",
                f"--rest_api_port={rest_port}",
                *FAST_FLAGS,
            ],
            tmp / "server.log",
            env,
            workers=module_workers,
        )
        try:
            server.wait_serving()
            receiver.wait_for(lambda spans: lifecycle_span(spans, "load", 1) is not None)
            # A second version: version 1 is unloaded (the latest policy), with its span.
            trained_models.copy_version(2, watched)
            receiver.wait_for(lambda spans: lifecycle_span(spans, "unload", 1) is not None)
            yield TracedServer(server, receiver, rest_port, trained_models.dataset.test_images)
        finally:
            server.stop()


def check_request_tree(
    spans: list[trace_pb2.Span], request: trace_pb2.Span, protocol: str, api: str
) -> dict[str, trace_pb2.Span]:
    """The request span's attributes and its decode/queue/encode children, in time order."""
    assert request.kind == SERVER_SPAN
    assert request.name == api
    values = attributes(request)
    assert values["pyserving.model"] == "mnist"
    assert values["pyserving.model.version"] == 2
    assert values["pyserving.signature"] == "predict_images"
    assert values["pyserving.protocol"] == protocol
    assert values["pyserving.api"] == api
    assert values["pyserving.status_code"] == "OK"
    assert request.status.code != trace_pb2.Status.STATUS_CODE_ERROR
    children = {
        s.name: s
        for s in spans
        if s.trace_id == request.trace_id and s.parent_span_id == request.span_id
    }
    assert {"decode", "queue", "encode"} <= set(children), sorted(children)
    decode, queue, encode = children["decode"], children["queue"], children["encode"]
    assert decode.start_time_unix_nano == request.start_time_unix_nano
    assert decode.end_time_unix_nano <= queue.start_time_unix_nano
    assert queue.end_time_unix_nano <= encode.start_time_unix_nano
    assert encode.end_time_unix_nano == request.end_time_unix_nano
    return children


def linking_runs(spans: list[trace_pb2.Span], request: trace_pb2.Span) -> list[trace_pb2.Span]:
    return [
        s
        for s in spans_named(spans, "run")
        if any(
            link.trace_id == request.trace_id and link.span_id == request.span_id
            for link in s.links
        )
    ]


def tree_in(spans: list[trace_pb2.Span], request: trace_pb2.Span) -> bool:
    """Whether the request's tree has arrived whole: with --workers the engine exports its
    queue and run spans apart from the front-end's request, decode and encode."""
    names = {
        s.name
        for s in spans
        if s.trace_id == request.trace_id and s.parent_span_id == request.span_id
    }
    return {"decode", "queue", "encode"} <= names and bool(linking_runs(spans, request))


def test_batched_grpc_requests_continue_the_callers_traces(traced: TracedServer) -> None:
    callers = caller_ids(6)
    barrier = threading.Barrier(len(callers))
    errors: list[BaseException] = []
    request = predict_request(traced.images[:1])

    def call(ids: tuple[bytes, bytes]) -> None:
        try:
            barrier.wait(10)
            reply = traced.server.predict_stub.Predict(
                request, timeout=30, metadata=(("traceparent", traceparent(*ids)),)
            )
            assert reply.model_spec.version.value == 2
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(ids,)) for ids in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    wanted = {trace_id for trace_id, _ in callers}

    def complete(spans: list[trace_pb2.Span]) -> bool:
        requests = [s for s in spans_named(spans, "Predict") if s.trace_id in wanted]
        encodes = [s for s in spans_named(spans, "encode") if s.trace_id in wanted]
        whole = all(tree_in(spans, request) for request in requests)
        return len(requests) == len(wanted) and len(encodes) == len(wanted) and whole

    spans = traced.receiver.wait_for(complete)
    runs_seen: dict[bytes, trace_pb2.Span] = {}
    for trace_id, caller_span in callers:
        [request_span] = [s for s in spans_named(spans, "Predict") if s.trace_id == trace_id]
        assert request_span.parent_span_id == caller_span  # the caller's span is the parent
        values = attributes(request_span)
        assert values["rpc.system"] == "grpc"
        assert values["rpc.grpc.status_code"] == 0
        children = check_request_tree(spans, request_span, "grpc", "Predict")
        # One run span per batch links every request it served; the request's queue wait
        # ends when that run starts.
        [run] = linking_runs(spans, request_span)
        runs_seen[run.span_id] = run
        assert children["queue"].end_time_unix_nano == run.start_time_unix_nano
        assert run.end_time_unix_nano <= children["encode"].start_time_unix_nano
    for run in runs_seen.values():
        linked = {(link.trace_id, link.span_id) for link in run.links}
        # The run is the child of the first request it served, in that request's trace.
        assert (run.trace_id, run.parent_span_id) in linked
        run_values = attributes(run)
        assert run_values["pyserving.model"] == "mnist"
        assert run_values["pyserving.model.version"] == 2
        assert run_values["pyserving.signature"] == "predict_images"
        assert run_values["pyserving.batch.size"] >= len(run.links)
    # Concurrent requests shared a batch: fewer run spans than requests.
    assert max(len(run.links) for run in runs_seen.values()) > 1, [
        len(run.links) for run in runs_seen.values()
    ]


def test_rest_request_continues_the_callers_trace(traced: TracedServer) -> None:
    [(trace_id, caller_span)] = caller_ids(1)
    reply = traced.rest_predict({"traceparent": traceparent(trace_id, caller_span)})
    assert len(reply["predictions"][0]) == 10
    spans = traced.receiver.wait_for(
        lambda spans: any(
            s.trace_id == trace_id and tree_in(spans, s) for s in spans_named(spans, "rest_predict")
        )
    )
    [request_span] = [s for s in spans_named(spans, "rest_predict") if s.trace_id == trace_id]
    assert request_span.parent_span_id == caller_span
    check_request_tree(spans, request_span, "rest", "rest_predict")
    [run] = linking_runs(spans, request_span)
    assert attributes(run)["pyserving.batch.requests"] >= 1


def test_request_without_traceparent_starts_a_trace(traced: TracedServer) -> None:
    known = {s.trace_id for s in traced.receiver.spans}
    reply = traced.server.predict_stub.Predict(predict_request(traced.images[:2]), timeout=30)
    assert reply.model_spec.version.value == 2

    def new_roots(spans: list[trace_pb2.Span]) -> list[trace_pb2.Span]:
        return [
            s
            for s in spans_named(spans, "Predict")
            if s.trace_id not in known and not s.parent_span_id
        ]

    spans = traced.receiver.wait_for(
        lambda spans: any(tree_in(spans, root) for root in new_roots(spans))
    )
    [request_span] = new_roots(spans)
    check_request_tree(spans, request_span, "grpc", "Predict")


def test_failed_request_span_has_its_status(traced: TracedServer) -> None:
    [(trace_id, caller_span)] = caller_ids(1)
    request = predict_request(traced.images[:1], model="no_such_model")
    with pytest.raises(grpc.RpcError) as caught:
        traced.server.predict_stub.Predict(
            request, timeout=30, metadata=(("traceparent", traceparent(trace_id, caller_span)),)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    spans = traced.receiver.wait_for(
        lambda spans: any(s.trace_id == trace_id for s in spans_named(spans, "Predict"))
    )
    [request_span] = [s for s in spans_named(spans, "Predict") if s.trace_id == trace_id]
    values = attributes(request_span)
    assert values["pyserving.status_code"] == "NOT_FOUND"
    assert values["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert values["pyserving.model"] == "no_such_model"
    assert request_span.status.code == trace_pb2.Status.STATUS_CODE_ERROR


def test_loads_and_unloads_have_spans(traced: TracedServer) -> None:
    spans = traced.receiver.wait_for(lambda spans: lifecycle_span(spans, "load", 2) is not None)
    for name, version in (("load", 1), ("load", 2), ("unload", 1)):
        span = lifecycle_span(spans, name, version)
        assert span is not None, (name, version)
        values = attributes(span)
        assert values["pyserving.model"] == "mnist"
        assert values["pyserving.outcome"] == ("available" if name == "load" else "end")
        assert span.start_time_unix_nano < span.end_time_unix_nano
        assert not span.parent_span_id  # a trace of its own
    assert (
        lifecycle_span(spans, "load", 2).start_time_unix_nano
        < lifecycle_span(spans, "unload", 1).start_time_unix_nano
    )
    assert {"service.name": "pyserving-under-test"}.items() <= traced.receiver.resources[0].items()
    assert "tracing_enabled" in traced.server.log_text()


def test_sdk_disabled_exports_nothing(trained_models: TrainedModels, tmp_path: Path) -> None:
    """OTEL_SDK_DISABLED=true beats an endpoint: no tracer, and nothing arrives even after
    requests and a clean stop (which would flush any buffered span)."""
    watched = tmp_path / "monitored"
    trained_models.copy_version(2, watched)
    with OtlpReceiver() as receiver:
        server = ServerProcess(
            [
                "--model_name=mnist",
                f"--model_base_path={watched}",
                "--enable_batching",
                *FAST_FLAGS,
            ],
            tmp_path / "server.log",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_SDK_DISABLED": "true",
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_BSP_SCHEDULE_DELAY": "50",
            },
        )
        try:
            server.wait_serving()
            images = trained_models.dataset.test_images[:1]
            server.predict_stub.Predict(
                predict_request(images),
                timeout=30,
                metadata=(("traceparent", traceparent(*caller_ids(1)[0])),),
            )
        finally:
            assert server.stop() == 0
        assert receiver.posts == 0
        assert "tracing_enabled" not in server.log_text()


def test_missing_extra_is_one_clear_startup_error(tmp_path: Path) -> None:
    """OTEL_* asks for traces but OpenTelemetry is not importable: exit 2, saying what to
    install (the import is made to fail in the child, as on a machine without the extra)."""
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from pyserving.api.cli import main\n"
        f"sys.exit(main(['serve', '--port={free_port()}', '--model_name=m', "
        f"'--model_base_path={tmp_path}']))"
    )
    result = run_python(
        "-c", code, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, timeout=120
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "pip install 'pyserving[otel]'" in result.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr
