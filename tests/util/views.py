"""A real lifecycle behind the data plane's views, for the data plane's tests: in this
process (tests/engine/test_data_plane.py) and in the engine process of
tests/util/ipc_data_plane_engine.py (tests/adapters/test_remote_data_plane.py).

The same collaborators as `pyserving serve` wires (`api.view_messages.engine_lifecycle`):
a bus, a manager, the live config and the model repository over folders under `root`,
with `RecordingServable`s (y = 2x) for versions. Model `m` serves versions 1 and 2 (label
`stable` = 1); `bad/1` fails to load; the repository holds `r` (version 5) and `empty`
(a version folder with no model file).
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

from pyserving.adapters.live_config import LiveConfig
from pyserving.adapters.model_config import parse_model_server_config
from pyserving.adapters.model_repository import ModelRepository, RepositoryControl
from pyserving.adapters.protos.model_registry_pb2 import ListModelsRequest
from pyserving.api.tfserving.example_plans import EXAMPLE_PLANS
from pyserving.api.view_messages import engine_lifecycle
from pyserving.engine.data_plane import DataPlane, InProcessDataPlane
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.model_admin import IndexEntry
from pyserving.engine.request_core import ModelRequest, PlanOptions, RequestCore
from pyserving.engine.runner import DirectRunner
from pyserving.engine.server_health import NOT_SERVING, SERVING
from tests.servables import RecordingServable
from tests.util.lifecycle import Lifecycle
from tests.util.sources import make_versions

M_CONFIG = (
    'config {{ name: "m" base_path: "{root}/m" model_version_policy {{ all {{}} }} '
    'version_labels {{ key: "stable" value: 1 }} }}'
)
BAD_CONFIG = 'config {{ name: "bad" base_path: "{root}/bad" }}'
AVAILABLE, END = ModelVersionStatus.AVAILABLE, ModelVersionStatus.END


def config_text(root: Path, *entries: str) -> str:
    return "model_config_list {\n" + "\n".join(e.format(root=root) for e in entries) + "\n}\n"


class RecordingLoader:
    """Loads a RecordingServable for any version; a version of `bad` fails to load."""

    platform = "tensorflow"

    def load(self, path: str) -> RecordingServable:
        if "/bad/" in path:
            raise OSError(f"cannot read {path}")
        return RecordingServable()


class ViewsEngine:
    """The in-process plane with its views over a real lifecycle (`repository`: whether it
    has --model_repository)."""

    def __init__(self, root: Path, repository: bool = True) -> None:
        make_versions(root / "m", "1", "2")
        make_versions(root / "bad", "1")
        make_versions(root / "repo" / "r", "5")
        (root / "repo" / "empty" / "1").mkdir(parents=True)
        self.lifecycle = Lifecycle(RecordingLoader())
        manager = self.lifecycle.manager
        self.live = LiveConfig(
            parse_model_server_config(config_text(root, M_CONFIG), "test"),
            self.lifecycle.bus.publish,
            manager,
            self.lifecycle.bus.wait_idle,
            source_poll_wait_s=0,
        )
        control = RepositoryControl(
            ModelRepository(str(root / "repo")), self.live, manager.statuses
        )
        self.runner = DirectRunner(2)
        self.plane = InProcessDataPlane(
            RequestCore(self.lifecycle.map, self.runner),
            PlanOptions(),
            engine_lifecycle(manager, self.live, control if repository else None),
            EXAMPLE_PLANS,
        )
        self.live.start()
        self.lifecycle.settle()

    def close(self) -> None:
        self.live.stop()
        self.lifecycle.close()
        self.runner.close()


# ---------------------------------------------------------------- what both planes answer
LATEST = ModelRequest("m", None, None)
UNKNOWN = ModelRequest("nope", None, None)


async def refused(call: Awaitable[object]) -> ServingError:
    with pytest.raises(ServingError) as caught:
        await call
    return caught.value


async def check_views(plane: DataPlane, root: Path) -> None:
    """Status, readiness, metadata, listing and health of the settled lifecycle."""
    status = await plane.model_status(LATEST)
    assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [
        (1, AVAILABLE, 0),
        (2, AVAILABLE, 0),
    ]
    assert all(s.HasField("status") for s in status.model_version_status)
    stable = await plane.model_status(ModelRequest("m", None, "stable"))
    assert [s.version for s in stable.model_version_status] == [1]
    for model, code, text in [
        (UNKNOWN, Code.NOT_FOUND, "Could not find any versions of model nope"),
        (ModelRequest("m", 7, None), Code.NOT_FOUND, "Could not find version 7 of model m"),
    ]:
        error = await refused(plane.model_status(model))
        assert (error.code, error.message) == (code, text)

    ready = {
        (version, label): await plane.model_ready(ModelRequest("m", version, label))
        for version, label in [(None, None), (1, None), (3, None), (None, "stable"), (None, "x")]
    }
    assert ready == {
        (None, None): True,
        (1, None): True,
        (3, None): False,
        (None, "stable"): True,
        (None, "x"): False,
    }
    assert await plane.model_ready(UNKNOWN) is False

    metadata = await plane.model_metadata(ModelRequest("m", 1, None))
    assert json_format.MessageToDict(metadata) == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "2"]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": ["-1", "2"]}],
    }
    assert (await refused(plane.model_metadata(UNKNOWN))).code == Code.NOT_FOUND

    listing = await plane.list_models(ListModelsRequest())
    assert json_format.MessageToDict(listing, preserving_proto_field_name=True) == {
        "models": [
            {
                "name": "m",
                "configured": True,
                "base_path": f"{root}/m",
                "platform": "tensorflow",
                "versions": [
                    {"version": "1", "state": "available"},
                    {"version": "2", "state": "available"},
                ],
                "labels": [
                    {"label": "stable", "version": "1", "configured_version": "1", "serving": True}
                ],
            }
        ]
    }
    assert await plane.list_models(ListModelsRequest(model_name="m")) == listing
    error = await refused(plane.list_models(ListModelsRequest(model_name="nope")))
    assert (error.code, error.message) == (Code.NOT_FOUND, "Could not find model nope")

    assert await plane.health("") == SERVING
    assert await plane.health("m") == SERVING
    assert await plane.health("nope") is None


async def check_repository(plane: DataPlane) -> None:
    """Index, load and unload through the live config; Triton's codes for refusals."""
    assert await plane.repository_index(False) == [IndexEntry("empty"), IndexEntry("r")]
    assert await plane.repository_index(True) == []
    await plane.repository_load("r")
    assert await plane.repository_index(True) == [IndexEntry("r", "5", "READY", "")]
    assert await plane.health("r") == SERVING
    await plane.repository_unload("r")
    assert IndexEntry("r", "5", "UNAVAILABLE", "unloaded") in await plane.repository_index(False)
    assert await plane.health("r") is None
    error = await refused(plane.repository_load("nope"))
    assert error.code == Code.INTERNAL and "failed to load 'nope'" in error.message
    error = await refused(plane.repository_load("empty"))
    assert error.code == Code.INVALID_ARGUMENT and "holds a model file" in error.message


async def check_no_repository(plane: DataPlane) -> None:
    for call in (
        plane.repository_index(False),
        plane.repository_load("r"),
        plane.repository_unload("r"),
    ):
        error = await refused(call)
        assert error.code == Code.UNIMPLEMENTED and "--model_repository" in error.message


def reload_request(text: str) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return request


async def check_reload(plane: DataPlane, root: Path) -> None:
    """TF Serving's answers: a failed load is UNKNOWN (the config stays in force), an empty
    or unparsable config INVALID_ARGUMENT; the views follow the new config."""
    error = await refused(plane.reload_config(model_management_pb2.ReloadConfigRequest()))
    assert error.code == Code.INVALID_ARGUMENT and "ModelConfigList" in error.message
    no_path = reload_request('model_config_list { config { name: "x" } }')
    assert (await refused(plane.reload_config(no_path))).code == Code.INVALID_ARGUMENT
    with_bad = reload_request(config_text(root, M_CONFIG, BAD_CONFIG))
    error = await refused(plane.reload_config(with_bad))
    assert error.code == Code.UNKNOWN and "cannot read" in error.message
    status = await plane.model_status(ModelRequest("bad", None, None))
    [failed] = status.model_version_status
    assert (failed.version, failed.state, failed.status.error_code) == (1, END, 2)
    assert await plane.health("bad") == NOT_SERVING
    response = await plane.reload_config(reload_request(config_text(root, M_CONFIG)))
    assert response.HasField("status") and response.status.error_code == 0
    assert await plane.health("bad") is None
    assert [m.name for m in (await plane.list_models(ListModelsRequest())).models] == ["m"]
