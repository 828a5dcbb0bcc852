"""The in-process data plane: one call answers a request, and holds its version meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pyserving.engine.data_plane import InferCall, InProcessDataPlane
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import ModelRequest, PlanOptions, RequestCore
from pyserving.engine.runner import DirectRunner
from pyserving.engine.servable_map import ServableHandle, ServableMap
from pyserving.engine.server_health import NOT_SERVING
from tests.servables import SIG, WAIT_S, RecordingServable
from tests.util.views import (
    ViewsEngine,
    check_no_repository,
    check_reload,
    check_repository,
    check_views,
)

MODEL = ModelRequest("m", None, None)


def plane_over(*versions: int) -> tuple[InProcessDataPlane, ServableMap, list[RecordingServable]]:
    servable_map = ServableMap()
    servables = []
    for version in versions:
        servable = RecordingServable()
        servable_map.add(ServableHandle("m", version, servable, f"sha256:v{version}"))
        servables.append(servable)
    plane = InProcessDataPlane(RequestCore(servable_map, DirectRunner(2)), PlanOptions())
    return plane, servable_map, servables


def test_one_call_answers_with_the_outputs_the_version_and_the_signature() -> None:
    plane, _, _ = plane_over(1, 2)
    x = np.array([[1.0, 2.0]], np.float32)
    answer = asyncio.run(plane.infer(InferCall(MODEL, "", {"x": x}, (), None)))
    assert answer.version == 2 and answer.signature == SIG
    assert answer.fingerprint == "sha256:v2"  # the answering version's, from its handle
    np.testing.assert_array_equal(answer.outputs["y"], x * 2)
    pinned = ModelRequest("m", 1, None)
    pinned_answer = asyncio.run(plane.infer(InferCall(pinned, SIG, {"x": x}, ("y",), None)))
    assert (pinned_answer.version, pinned_answer.fingerprint) == (1, "sha256:v1")


def test_refusals_keep_their_codes() -> None:
    plane, _, _ = plane_over(1)
    x = {"x": np.zeros((1, 2), np.float32)}
    cases = [
        (InferCall(ModelRequest("nope", None, None), "", x, (), None), Code.NOT_FOUND),
        (InferCall(MODEL, "missing", x, (), None), Code.FAILED_PRECONDITION),
        (InferCall(MODEL, "", {"z": x["x"]}, (), None), Code.INVALID_ARGUMENT),
        (InferCall(MODEL, "", x, ("nope",), None), Code.INVALID_ARGUMENT),
    ]
    for call, code in cases:
        with pytest.raises(ServingError) as caught:
            asyncio.run(plane.infer(call))
        assert caught.value.code == code, (call, caught.value)
    with pytest.raises(ServingError) as caught:
        asyncio.run(plane.signature(MODEL, "missing"))
    assert caught.value.code == Code.FAILED_PRECONDITION
    assert asyncio.run(plane.signature(MODEL, "")).name == SIG


def test_a_version_is_held_for_the_whole_call() -> None:
    """The engine counts requests in flight: a version leaving the map while a call runs
    is retired only after the call finished (a swap loses no request)."""
    plane, servable_map, (servable,) = plane_over(1)
    servable.gate.clear()

    async def scenario() -> None:
        call = asyncio.ensure_future(
            plane.infer(InferCall(MODEL, "", {"x": np.ones((1, 2), np.float32)}, (), None))
        )
        assert await asyncio.to_thread(servable.running.wait, WAIT_S)
        handle = servable_map.remove("m", 1)
        assert handle is not None and handle.in_flight > 0
        assert not await asyncio.to_thread(handle.retire_and_wait, 0.2)  # still running
        servable.gate.set()
        assert (await call).version == 1
        assert await asyncio.to_thread(handle.retire_and_wait, WAIT_S)

    asyncio.run(scenario())


# ---------------------------------------------------------------- the views and admin calls
@pytest.fixture
def views(tmp_path: Path) -> Iterator[ViewsEngine]:
    engine = ViewsEngine(tmp_path)
    yield engine
    engine.close()


def test_views_read_the_lifecycle(views: ViewsEngine, tmp_path: Path) -> None:
    asyncio.run(check_views(views.plane, tmp_path))


def test_the_repository_api_goes_through_the_live_config(views: ViewsEngine) -> None:
    asyncio.run(check_repository(views.plane))


def test_a_config_reload_answers_as_tf_serving(views: ViewsEngine, tmp_path: Path) -> None:
    asyncio.run(check_reload(views.plane, tmp_path))


def test_without_a_repository_its_calls_are_unimplemented(tmp_path: Path) -> None:
    engine = ViewsEngine(tmp_path, repository=False)
    try:
        asyncio.run(check_no_repository(engine.plane))
    finally:
        engine.close()


def test_the_engine_stopping_is_not_serving(views: ViewsEngine) -> None:
    views.plane.server_health.shutting_down = True
    assert asyncio.run(views.plane.health("")) == NOT_SERVING
    assert asyncio.run(views.plane.health("m")) == NOT_SERVING
    assert asyncio.run(views.plane.health("nope")) is None


def test_a_plane_without_a_lifecycle_serves_inference_only() -> None:
    plane, _, _ = plane_over(1)
    for call in (plane.model_status(MODEL), plane.health(""), plane.repository_index(False)):
        with pytest.raises(ServingError) as caught:
            asyncio.run(call)
        assert caught.value.code == Code.UNIMPLEMENTED
