"""The REST handler on a real aiohttp port with a small real servable: routing, TF Serving's
HTTP statuses, the deadline, the body limit, CORS and request metrics."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import aiohttp
import numpy as np
import pytest

from pyserving.api.envelope.http_server import HttpServer
from pyserving.api.envelope.request_envelope import Envelope, observer_series
from pyserving.api.tfserving.rest_api import HTTP_STATUS, RestApi, RestOptions, parse_call
from pyserving.engine.batching import BatchingRunner
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.data_plane import InProcessDataPlane
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.events import BatchRun
from pyserving.engine.request_core import PlanOptions, RequestCore
from pyserving.engine.runner import DirectRunner, ModelCall, Runner
from pyserving.engine.servable import Signature, TensorSpec
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.util.waiting import eventually_async

F32 = np.dtype(np.float32)


class DoublingServable:
    """y = 2x on `serving_default`; `slow` does the same after `release` is set."""

    def __init__(self) -> None:
        spec = {"x": TensorSpec("x", F32, (None, 2))}
        out = {"y": TensorSpec("y", F32, (None, 2))}
        self.release = threading.Event()
        self.running_slow = threading.Event()
        self._signatures = {
            name: Signature(name, "tensorflow/serving/predict", spec, out)
            for name in ("serving_default", "slow")
        }

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> dict[str, np.ndarray]:
        if signature == "slow":
            self.running_slow.set()
            self.release.wait(30)
        return {"y": inputs["x"] * 2}

    def signature_def_map(self) -> None:
        return None

    def unload(self) -> None:
        pass


Observed = list[tuple[str, str, str, float]]


def serve(
    body: Callable[[int, ServableHandle, Observed], Awaitable[None]],
    runner: Runner | None = None,
    **options: object,
) -> None:
    servable_map = ServableMap()
    handle = ServableHandle("m", 3, DoublingServable())
    servable_map.add(handle)
    runner = runner or DirectRunner(2)
    observed: Observed = []
    settings = {
        "timeout_s": 30.0,
        "max_body_bytes": 1 << 20,
        "max_concurrent": 8,
        "cors": False,
        "plan_options": PlanOptions(),
        **options,
    }
    api = RestApi(
        InProcessDataPlane(RequestCore(servable_map, runner), PlanOptions()),
        Envelope(observer_series(lambda *args: observed.append(args))),
        # ignored below: settings: a dict of RestOptions' fields
        RestOptions(**settings),  # type: ignore[arg-type]
    )
    server = HttpServer(0, host="127.0.0.1")
    server.add_routes(api.routes())

    async def main() -> None:
        port = await server.start()
        try:
            await body(port, handle, observed)
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    finally:
        # ignored below: tests.servables' slow servable's event
        handle.servable.release.set()  # type: ignore[attr-defined]
        runner.close()


async def post(port: int, path: str, payload: object) -> tuple[int, dict, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", json=payload) as reply,
    ):
        return reply.status, await reply.json(), dict(reply.headers)


def test_predict_by_version_label_and_latest() -> None:
    async def body(port: int, handle: ServableHandle, observed: Observed) -> None:
        payload = {"instances": [[1, 2], [3, 4]]}
        for path in ("/v1/models/m:predict", "/v1/models/m/versions/3:predict"):
            status, reply, headers = await post(port, path, payload)
            assert (status, reply) == (200, {"predictions": [[2.0, 4.0], [6.0, 8.0]]})
            assert headers["Content-Type"] == "application/json"
            assert "Access-Control-Allow-Origin" not in headers
        status, reply, _ = await post(port, "/v1/models/m/labels/stable:predict", payload)
        assert status == 400 and "Unrecognized servable version label: stable" in reply["error"]
        status, reply, _ = await post(port, "/v1/models/m/versions/4:predict", payload)
        assert status == 404 and reply["error"] == (
            "Servable not found for request: Specific(m, 4)"
        )
        assert [(m, api, code) for m, api, code, _ in observed] == [
            ("m", "rest_predict", "OK"),
            ("m", "rest_predict", "OK"),
            ("m", "rest_predict", "INVALID_ARGUMENT"),
            ("m", "rest_predict", "NOT_FOUND"),
        ]

    serve(body)


def test_deadline_answers_504_but_keeps_the_version_until_the_call_ends() -> None:
    async def body(port: int, handle: ServableHandle, observed: Observed) -> None:
        servable = handle.servable
        started = time.monotonic()
        status, reply, _ = await post(
            port, "/v1/models/m:predict", {"signature_name": "slow", "instances": [[1, 2]]}
        )
        assert status == 504 and "--rest_api_timeout_in_ms" in reply["error"]
        assert time.monotonic() - started < 10
        # ignored below: tests.servables' slow servable's event
        assert servable.running_slow.is_set()  # type: ignore[attr-defined]
        assert handle.in_flight >= 1  # the model call still runs: its version stays held
        # ignored below: tests.servables' slow servable's event
        servable.release.set()  # type: ignore[attr-defined]
        await eventually_async(lambda: handle.in_flight == 0, 5, 0.05, "the model call to end")
        assert observed[-1][2] == "DEADLINE_EXCEEDED"

    serve(body, timeout_s=0.3)


def test_deadline_drops_a_queued_request_from_its_batch() -> None:
    """--rest_api_timeout_in_ms reaches the batching runner: a request answered 504 while
    it waited for its batch is not run when the batch runs."""
    batches: list[BatchRun] = []
    runner = BatchingRunner(
        BatchingOptions(max_batch_size=8, batch_timeout_micros=1_500_000, num_batch_threads=1),
        publish=lambda event: batches.append(event) if isinstance(event, BatchRun) else None,
    )

    async def body(port: int, handle: ServableHandle, observed: Observed) -> None:
        status, reply, _ = await post(port, "/v1/models/m:predict", {"instances": [[1, 2]]})
        assert status == 504 and "--rest_api_timeout_in_ms" in reply["error"]
        assert batches == []  # answered before its batch's timeout
        # A later request joins the same open batch, which runs at the batch timeout.
        outputs = await runner.run(
            handle, ModelCall("serving_default", {"x": np.ones((1, 2), F32)}, ())
        )
        assert outputs["y"].tolist() == [[2.0, 2.0]]
        assert [(b.size, b.signature) for b in batches] == [(1, "serving_default")]
        assert handle.in_flight == 0
        assert observed[-1][1:3] == ("rest_predict", "DEADLINE_EXCEEDED")

    serve(body, runner=runner, timeout_s=0.2)


def _raw_request(port: int, head: bytes, body: bytes, rest: bytes = b"") -> bytes:
    """`head` and `body` at once and, when given, `rest` 0.2 s later: the body is then
    still arriving when the handler starts reading it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        if rest:
            time.sleep(0.2)
            s.sendall(rest)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_oversize_body_is_refused_from_its_length_without_reading_it() -> None:
    async def body(port: int, handle: ServableHandle, observed: Observed) -> None:
        head = (
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 50000000000\r\n\r\n"
        )
        reply = await asyncio.to_thread(_raw_request, port, head, b'{"instances": [')
        assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
        assert b"larger than the limit of 1024 bytes" in reply
        assert b"Connection: close" in reply
        chunked = (
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        piece = b"800\r\n" + b" " * 0x800 + b"\r\n"
        reply = await asyncio.to_thread(_raw_request, port, chunked, piece + b"0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
        assert [code for _, _, code, _ in observed] == ["RESOURCE_EXHAUSTED"] * 2

    serve(body, max_body_bytes=1024)


def test_a_body_still_arriving_is_read_whole() -> None:
    payload = b'{"instances": [[1.5, 2.0], [3.0, 4.0]]}'
    half = len(payload) // 2

    async def body(port: int, handle: ServableHandle, observed: Observed) -> None:
        head = (
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
        )
        reply = await asyncio.to_thread(_raw_request, port, head, payload[:half], payload[half:])
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
        assert reply.endswith(b'{"predictions":[[3.0,4.0],[6.0,8.0]]}'), reply[-200:]
        chunked = (
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        first = b"%x\r\n%s\r\n" % (half, payload[:half])
        rest = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload) - half, payload[half:])
        reply = await asyncio.to_thread(_raw_request, port, chunked, first, rest)
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
        assert b'{"predictions":[[3.0,4.0],[6.0,8.0]]}' in reply, reply[-200:]

    serve(body)


def test_cors_headers_and_preflight() -> None:
    async def body(port: int, handle: ServableHandle, observed: Observed) -> None:
        status, _, headers = await post(port, "/v1/models/m:predict", {"instances": [[1, 2]]})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "POST, GET"
        async with (
            aiohttp.ClientSession() as session,
            session.options(f"http://127.0.0.1:{port}/v1/models/m:predict") as reply,
        ):
            assert reply.status == 204
            assert reply.headers["Access-Control-Allow-Headers"] == "Content-Type"

    serve(body, cors=True)


def test_malformed_paths_and_version_with_label() -> None:
    with pytest.raises(ServingError, match="not both"):
        parse_call("POST", "/v1/models/m/versions/1/labels/x:predict")
    with pytest.raises(ServingError, match="Malformed request: POST /v1/models/m:explain"):
        parse_call("POST", "/v1/models/m:explain")
    with pytest.raises(ServingError, match="Missing model name"):
        parse_call("GET", "/v1/models")
    with pytest.raises(ServingError, match="Failed to convert version"):
        parse_call("GET", "/v1/models/m/versions/99999999999999999999")
    call = parse_call("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd/labels/a%20b/metadata")
    assert call.kind == "metadata"
    assert (call.spec.name, call.spec.label) == ("../../etc/passwd", "a b")  # looked up only
    with pytest.raises(ServingError, match="Failed to decode model name: %ff"):
        parse_call("GET", "/v1/models/%ff")
    call = parse_call("POST", "/v1/models/m/VERSIONS/2:Predict")  # TF Serving's (?i)
    assert (call.kind, call.spec.version) == ("predict", 2)


def test_http_statuses_are_tf_servings() -> None:
    expected = {
        Code.INVALID_ARGUMENT: 400,
        Code.FAILED_PRECONDITION: 400,
        Code.NOT_FOUND: 404,
        Code.RESOURCE_EXHAUSTED: 429,
        Code.UNAVAILABLE: 503,
        Code.DEADLINE_EXCEEDED: 504,
        Code.UNIMPLEMENTED: 501,
        Code.INTERNAL: 500,
        Code.UNKNOWN: 500,
        Code.CANCELLED: 499,
        Code.ALREADY_EXISTS: 409,
        Code.PERMISSION_DENIED: 403,
        Code.ABORTED: 409,
        Code.OUT_OF_RANGE: 400,
        Code.DATA_LOSS: 500,
        Code.UNAUTHENTICATED: 401,
    }
    assert {code: HTTP_STATUS[code.name] for code in Code} == expected
