"""Every gRPC call is counted by model, API and code, and logs with its request id bound.

A real grpc.aio server on a real port, with the real PredictionService over a serving map.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import structlog
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

from pyserving.adapters.metrics import UNKNOWN_MODEL, ServingMetrics, new_registry
from pyserving.api.envelope import tensor_codec
from pyserving.api.envelope.request_envelope import Envelope, add_service
from pyserving.api.tfserving.prediction_service import PredictionService
from pyserving.engine.data_plane import InProcessDataPlane
from pyserving.engine.request_core import PlanOptions, RequestCore
from pyserving.engine.request_scope import merge_request_scope
from pyserving.engine.runner import DirectRunner
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.servables import ConstantServable
from tests.util.metrics import samples


class BrokenMetadataServable(ConstantServable):
    """A servable whose metadata lookup fails unexpectedly: the INTERNAL path."""

    def signature_def_map(self) -> Any:
        raise RuntimeError("metadata exploded")


@pytest.fixture
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog with the real context merging, recording each event dict."""
    records: list[dict[str, Any]] = []

    def record(logger: object, name: str, event_dict: dict[str, Any]) -> str:
        records.append(dict(event_dict, level=name))
        return ""

    structlog.reset_defaults()  # whatever an earlier test configured (levels, caching)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, merge_request_scope, record],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    yield records
    structlog.reset_defaults()


async def _scenario(metrics: ServingMetrics) -> None:
    servable_map = ServableMap()
    servable_map.add(ServableHandle("mnist", 1, BrokenMetadataServable(1)))
    runner = DirectRunner(2)
    options = PlanOptions(max_elements=1 << 20)
    service = PredictionService(
        InProcessDataPlane(RequestCore(servable_map, runner), options), options
    )
    server = grpc.aio.server()
    add_service(
        server,
        Envelope(series=metrics.request_series),
        prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
        service,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            codes = []
            for model in ("mnist", "no-such-model", "another-typo"):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = model
                request.inputs["x"].CopyFrom(_tensor(np.zeros((1,), np.float32)))
                try:
                    await stub.Predict(request, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
            metadata = get_model_metadata_pb2.GetModelMetadataRequest()
            metadata.model_spec.name = "mnist"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetModelMetadata(
                    metadata, timeout=10, metadata=(("x-request-id", "client-id-42"),)
                )
            assert info.value.code() == grpc.StatusCode.INTERNAL
            assert "metadata exploded" not in (info.value.details() or "")
            # ConstantServable has no signatures: FAILED_PRECONDITION; unknown models: NOT_FOUND
            assert codes == [
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.NOT_FOUND,
            ]
    finally:
        await server.stop(None)
        runner.close()


def _tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto()
    tensor_codec.encode(array, proto)
    return proto


def test_requests_counted_by_model_api_and_code(captured_logs: list[dict[str, Any]]) -> None:
    registry = new_registry()
    metrics = ServingMetrics(registry, known_models=lambda: {"mnist"})
    asyncio.run(_scenario(metrics))
    assert samples(registry, "pyserving_requests_total") == {
        (("api", "Predict"), ("code", "FAILED_PRECONDITION"), ("model", "mnist")): 1.0,
        (("api", "Predict"), ("code", "NOT_FOUND"), ("model", UNKNOWN_MODEL)): 2.0,
        (("api", "GetModelMetadata"), ("code", "INTERNAL"), ("model", "mnist")): 1.0,
    }
    latency = samples(registry, "pyserving_request_seconds_count")
    assert latency[(("api", "Predict"), ("model", UNKNOWN_MODEL))] == 2.0

    failed = [r for r in captured_logs if r["event"] == "request_failed"]
    assert len(failed) == 1
    assert failed[0]["request_id"] == "client-id-42"
    assert failed[0]["api"] == "GetModelMetadata" and failed[0]["model"] == "mnist"
    finished = [r for r in captured_logs if r["event"] == "request_finished"]
    assert len(finished) == 4 and all(r["level"] == "debug" for r in finished)
    generated = {r["request_id"] for r in finished} - {"client-id-42"}
    assert len(generated) == 3 and all(len(i) == 16 for i in generated)
    # the id is bound for the request only, never left behind in the context
    assert "request_id" not in structlog.contextvars.get_contextvars()
