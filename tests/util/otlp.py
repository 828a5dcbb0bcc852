"""A tiny OTLP/HTTP trace receiver on 127.0.0.1: what a collector would get from a server.

`OtlpReceiver(decode=True)` parses every POST /v1/traces as an ExportTraceServiceRequest
(opentelemetry-proto) and keeps its spans; `decode=False` accepts and drops (the bench's
sink, so the cost measured is the server's, not a collector's).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

TRACES_PATH = "/v1/traces"


class OtlpReceiver:
    def __init__(self, decode: bool = True) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.resources: list[dict[str, str]] = []
        self.posts = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != TRACES_PATH:
                    self.send_error(404)
                    return
                if decode:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    receiver._add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                else:
                    with receiver._changed:
                        receiver.posts += 1
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT names (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._changed:
            self.posts += 1
            for resource_spans in request.resource_spans:
                self.resources.append(
                    {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(scope_spans.spans)
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[trace_pb2.Span]], bool], timeout_s: float = 30.0
    ) -> list[trace_pb2.Span]:
        """The spans so far once `predicate(spans)` holds; AssertionError after `timeout_s`."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.spans), timeout_s):
                names = sorted({s.name for s in self.spans})
                raise AssertionError(f"spans not as expected after {timeout_s}s: {names}")
            return list(self.spans)


def attributes(span: trace_pb2.Span) -> dict[str, object]:
    """A span's attributes as plain values."""
    values: dict[str, object] = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values
