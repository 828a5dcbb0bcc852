"""The data plane across processes: a front-end's RemoteDataPlane against a real engine
process answers as the in-process plane does, and keeps the engine's error codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tensorflow_serving.apis.classification_pb2 import ClassificationRequest

from pyserving.adapters.ipc import EngineClient
from pyserving.adapters.ipc.data_plane import RemoteDataPlane, signature_from, signature_params
from pyserving.engine.data_plane import DataPlane, InferCall
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import ModelRequest
from tests.servables import SIG, RecordingServable
from tests.util.ipc_data_plane_engine import spawn_data_plane_engine
from tests.util.ipc_echo import ipc_address, with_client
from tests.util.views import check_no_repository, check_reload, check_repository, check_views

LATEST = ModelRequest("m", None, None)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine")


@pytest.fixture(scope="module")
def address(root: Path) -> Iterator[str]:
    with ipc_address() as address:
        engine = spawn_data_plane_engine(address, root)
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


# ---------------------------------------------------------------- the views and admin calls
def on_remote(address: str, check: Callable[[DataPlane], Awaitable[None]]) -> None:
    async def body(client: EngineClient) -> None:
        await check(RemoteDataPlane(client))

    with_client(address, body)


def test_views_cross_as_the_engine_answers_them(address: str, root: Path) -> None:
    on_remote(address, lambda plane: check_views(plane, root))


def test_the_repository_api_crosses(address: str) -> None:
    on_remote(address, check_repository)


def test_a_config_reload_crosses(address: str, root: Path) -> None:
    on_remote(address, lambda plane: check_reload(plane, root))


def test_without_a_repository_unimplemented_crosses(tmp_path: Path) -> None:
    with ipc_address() as address:
        engine = spawn_data_plane_engine(address, tmp_path, repository=False)
        try:
            on_remote(address, check_no_repository)
        finally:
            engine.kill()
            engine.wait()


def test_an_undecodable_view_request_is_invalid_argument(address: str) -> None:
    async def body(client: EngineClient) -> None:
        for method in ("list_models", "reload_config"):
            with pytest.raises(ServingError) as caught:
                await client.call(method, {"message": b"\xff\xff"})
            assert caught.value.code == Code.INVALID_ARGUMENT, method

    with_client(address, body)


def test_a_signature_crosses_once_while_the_serving_map_stays(tmp_path: Path) -> None:
    """REST and the Open Inference Protocol ask for the signature before they decode: the
    front-end keeps it while the engine's answers say the serving map is the same one, so
    such a request crosses once; a map changed (a model loaded) makes it ask again."""

    async def body(client: EngineClient) -> None:
        plane = RemoteDataPlane(client)
        first = await plane.signature(LATEST, "")
        sent = client.counts.sent
        x = np.ones((1, 2), np.float32)
        await plane.infer(InferCall(LATEST, "", {"x": x}, (), None))
        assert await plane.signature(LATEST, "") == first
        assert await plane.signature(LATEST, "") == first
        assert client.counts.sent == sent + 1, "a kept signature crossed again"
        await plane.repository_load("r")  # its answer is made under the new map
        sent = client.counts.sent
        assert await plane.signature(LATEST, "") == first
        assert client.counts.sent == sent + 1, "a signature of an older map was kept"
        with pytest.raises(ServingError):
            await plane.signature(ModelRequest("m", 9, None), "")  # refused: forgets them
        sent = client.counts.sent
        await plane.signature(LATEST, "")
        assert client.counts.sent == sent + 1

    with ipc_address() as address:
        engine = spawn_data_plane_engine(address, tmp_path)
        try:
            with_client(address, body)
        finally:
            engine.kill()
            engine.wait()
