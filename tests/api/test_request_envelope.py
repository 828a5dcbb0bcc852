"""One envelope for both protocols, on a real grpc.aio port and a real aiohttp port sharing
one serving map: the same error reaches a gRPC client as its code and a REST client as TF
Serving's HTTP status, with the same message, and both honour the client's x-request-id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
import structlog
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2, prediction_service_pb2_grpc

from pyserving.api.envelope.http_server import HttpServer
from pyserving.api.envelope.request_envelope import HTTP_STATUS, Envelope, add_service
from pyserving.api.tfserving.prediction_service import PredictionService
from pyserving.api.tfserving.rest_api import RestApi, RestOptions
from pyserving.engine.data_plane import InProcessDataPlane
from pyserving.engine.request_core import PlanOptions, RequestCore
from pyserving.engine.request_scope import merge_request_scope
from pyserving.engine.runner import DirectRunner
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.servables import ConstantServable


@pytest.fixture
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []

    def record(logger: object, name: str, event_dict: dict[str, Any]) -> str:
        records.append(dict(event_dict))
        return ""

    structlog.reset_defaults()
    structlog.configure(
        processors=[merge_request_scope, record],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    yield records
    structlog.reset_defaults()


@dataclass
class Both:
    envelope: Envelope
    grpc_predict: Callable[..., Awaitable[Any]]
    rest: aiohttp.ClientSession
    rest_url: str

    async def grpc_error(self, model: str, request_id: str | None = None) -> tuple[str, str]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        metadata = (("x-request-id", request_id),) if request_id else None
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await self.grpc_predict(request, timeout=10, metadata=metadata)
        return info.value.code().name, info.value.details() or ""

    async def rest_error(self, model: str, request_id: str | None = None) -> tuple[int, str]:
        headers = {"x-request-id": request_id} if request_id else {}
        url = f"{self.rest_url}/v1/models/{model}:predict"
        async with self.rest.post(url, json={"instances": [1]}, headers=headers) as reply:
            return reply.status, (await reply.json())["error"]


def both_protocols(body: Callable[[Both], Awaitable[None]]) -> None:
    servable_map = ServableMap()
    servable_map.add(ServableHandle("constant", 1, ConstantServable(1)))  # no signatures
    runner = DirectRunner(2)
    plane = InProcessDataPlane(RequestCore(servable_map, runner), PlanOptions())
    envelope = Envelope()
    rest = RestApi(
        plane,
        envelope,
        RestOptions(
            timeout_s=30,
            max_body_bytes=1 << 20,
            max_concurrent=4,
            cors=False,
            plan_options=PlanOptions(),
        ),
    )

    async def main() -> None:
        server = grpc.aio.server()
        add_service(
            server,
            envelope,
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
            PredictionService(plane, PlanOptions()),
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        http = HttpServer(0, host="127.0.0.1")
        http.add_routes(rest.routes())
        http_port = await http.start()
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
                aiohttp.ClientSession() as session,
            ):
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                await body(Both(envelope, stub.Predict, session, f"http://127.0.0.1:{http_port}"))
        finally:
            await http.stop()
            await server.stop(None)

    try:
        asyncio.run(main())
    finally:
        runner.close()


def test_an_error_maps_the_same_on_both_protocols() -> None:
    async def body(both: Both) -> None:
        for model in ("no-such-model", "constant"):  # NOT_FOUND; FAILED_PRECONDITION
            code, grpc_message = await both.grpc_error(model)
            status, rest_message = await both.rest_error(model)
            assert code in ("NOT_FOUND", "FAILED_PRECONDITION")
            assert (status, rest_message) == (HTTP_STATUS[code], grpc_message)
        both.envelope.start_draining()  # the envelope's own error: UNAVAILABLE, 503
        code, grpc_message = await both.grpc_error("constant")
        status, rest_message = await both.rest_error("constant")
        assert (code, status) == ("UNAVAILABLE", 503)
        assert rest_message == grpc_message and "shutting down" in grpc_message

    both_protocols(body)


def test_request_ids_are_honoured_on_both_protocols(captured_logs: list[dict[str, Any]]) -> None:
    async def body(both: Both) -> None:
        await both.grpc_error("constant", request_id="grpc-id-1")
        await both.rest_error("constant", request_id="rest-id-2")
        await both.grpc_error("constant", request_id="bad id<>;3")  # cleaned, not refused
        await both.grpc_error("constant")
        await both.rest_error("constant")

    both_protocols(body)
    finished = [r for r in captured_logs if r["event"] == "request_finished"]
    ids = [r["request_id"] for r in finished]
    assert ids[:3] == ["grpc-id-1", "rest-id-2", "badid3"]
    generated = ids[3:]
    assert len(generated) == 2 and len(set(generated)) == 2
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in generated)
    assert [r["api"] for r in finished] == [
        "Predict",
        "rest_predict",
        "Predict",
        "Predict",
        "rest_predict",
    ]
