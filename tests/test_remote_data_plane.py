"""The data plane across processes: a front-end's RemoteDataPlane against a real engine
process answers as the in-process plane does, and keeps the engine's error codes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from tensorflow_serving.apis.classification_pb2 import ClassificationRequest

from pyserving.adapters.ipc import EngineClient
from pyserving.adapters.ipc.data_plane import RemoteDataPlane, signature_from, signature_params
from pyserving.engine.data_plane import InferCall
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import ModelRequest
from tests.servables import SIG, RecordingServable
from tests.util.ipc_data_plane_engine import spawn_data_plane_engine
from tests.util.ipc_echo import ipc_address, with_client

LATEST = ModelRequest("m", None, None)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with ipc_address() as address:
        engine = spawn_data_plane_engine(address)
        yield address
        engine.kill()
        engine.wait()


def test_a_signature_crosses_unchanged() -> None:
    signature = RecordingServable().signatures[SIG]
    assert signature_from(signature_params(signature)) == signature


def test_infer_answers_with_the_outputs_version_and_signature(address: str) -> None:
    async def body(client: EngineClient) -> None:
        plane = RemoteDataPlane(client)
        x = np.arange(8, dtype=np.float32).reshape(4, 2)
        answer = await plane.infer(InferCall(LATEST, "", {"x": x}, (), None))
        assert answer.version == 2 and answer.signature == SIG
        np.testing.assert_array_equal(answer.outputs["y"], x * 2)
        pinned = ModelRequest("m", 1, None)
        calls = [
            plane.infer(InferCall(pinned, SIG, {"x": x[i : i + 1]}, ("y",), None)) for i in range(4)
        ]
        for i, one in enumerate(await asyncio.gather(*calls)):
            assert one.version == 1
            np.testing.assert_array_equal(one.outputs["y"], x[i : i + 1] * 2)
        signature = await plane.signature(LATEST, "")
        assert signature == RecordingServable().signatures[SIG]

    with_client(address, body)


def test_refusals_cross_with_their_codes(address: str) -> None:
    async def body(client: EngineClient) -> None:
        plane = RemoteDataPlane(client)
        x = {"x": np.zeros((1, 2), np.float32)}
        negative = {"x": x["x"] - 1}
        unknown = ModelRequest("nope", None, None)
        cases = [
            (plane.infer(InferCall(unknown, "", x, (), None)), Code.NOT_FOUND, "nope"),
            (plane.infer(InferCall(LATEST, "bad", x, (), None)), Code.FAILED_PRECONDITION, "bad"),
            (
                plane.infer(InferCall(LATEST, "", negative, (), None)),
                Code.INVALID_ARGUMENT,
                "negat",
            ),
            (plane.signature(LATEST, "bad"), Code.FAILED_PRECONDITION, "bad"),
            # A whole message crosses: the engine finds no classification signature here.
            (
                plane.classify(LATEST, ClassificationRequest(), None),
                Code.INVALID_ARGUMENT,
                "classification",
            ),
        ]
        for awaitable, code, word in cases:
            with pytest.raises(ServingError) as caught:
                await awaitable
            assert caught.value.code == code and word in caught.value.message, caught.value

    with_client(address, body)
