"""Many models from a --model_config_file, labels, live edits of the file, ReloadConfig and
ListModels, against one real server (module-scoped) with real SavedModels.

Each test sets the config it needs (`apply_config`) and waits for its effect, so the
tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, text_format
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
)

from pyserving.adapters.model_config import PARSE_ERROR_PREFIX
from pyserving.api.tfserving import model_listing
from tests.e2e.conftest import TrainedModels, predict_request
from tests.util.processes import ServerProcess, refused_start
from tests.util.waiting import eventually

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
CONFIG_POLL_S = 1.0
FLAGS = (
    "--file_system_poll_wait_seconds=0.2",
    f"--model_config_file_poll_wait_seconds={CONFIG_POLL_S}",
    "--max_num_load_retries=0",
    "--num_load_threads=2",
)


def copy_as(trained: TrainedModels, source_version: int, into: Path, version: int) -> Path:
    """Copy a trained version into a watched folder under another number, atomically."""
    into.mkdir(parents=True, exist_ok=True)
    staging = into / f".staging-{version}"
    shutil.copytree(trained.export_dir / str(source_version), staging)
    target = into / str(version)
    staging.rename(target)
    return target


def model_entry(name: str, base: Path, policy: str = "", **labels: int) -> str:
    label_text = " ".join(
        f'version_labels {{ key: "{k}" value: {v} }}' for k, v in sorted(labels.items())
    )
    return (
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" '
        f"{policy} {label_text} }}\n"
    )


class Setup:
    def __init__(self, root: Path, server: ServerProcess) -> None:
        self.root = root
        self.file = root / "models.config"
        self.server = server
        self.edits = 0

    def apply_config(self, *entries: str) -> float:
        """Write the config file (atomically); returns the time it was in place."""
        self.edits += 1
        text = f"# edit {self.edits}\nmodel_config_list {{\n{''.join(entries)}}}\n"
        staging = self.file.with_suffix(".tmp")
        staging.write_text(text)
        staging.rename(self.file)
        return time.monotonic()

    def standard(self, canary: int = 2) -> str:
        """alpha: versions 1-3 all served, stable → 1, canary → `canary`; beta: latest."""
        return model_entry(
            "alpha", self.root / "alpha", "model_version_policy { all {} }", stable=1, canary=canary
        ) + model_entry("beta", self.root / "beta")


def image() -> np.ndarray:
    return np.random.default_rng(0).random((1, 64), dtype=np.float32)


def predict(server: ServerProcess, model: str, label: str = "", version: int | None = None):
    request = predict_request(image(), model=model, version=version)
    if label:
        request.model_spec.version_label = label
    return server.predict_stub.Predict(request, timeout=10)


def served_version(server: ServerProcess, model: str, label: str = "") -> int | str:
    try:
        return predict(server, model, label).model_spec.version.value
    except grpc.RpcError as exc:
        return exc.code().name


def list_models(server: ServerProcess, model_name: str = ""):
    call = server.channel.unary_unary(
        f"/{model_listing.SERVICE_NAME}/ListModels",
        request_serializer=model_listing.ListModelsRequest.SerializeToString,
        response_deserializer=model_listing.ListModelsResponse.FromString,
    )
    return call(model_listing.ListModelsRequest(model_name=model_name), timeout=10)


@pytest.fixture(scope="module")
def setup(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("many")
    for version in (1, 2):
        trained_models.copy_version(version, root / "alpha")
        trained_models.copy_version(version, root / "beta")
    copy_as(trained_models, 2, root / "alpha", 3)  # a third version; the content may repeat
    (root / "models.config").write_text("")
    server = ServerProcess(
        [f"--model_config_file={root / 'models.config'}", *FLAGS], root / "server.log"
    )
    it = Setup(root, server)
    it.apply_config(it.standard())
    yield it
    assert server.stop() == 0


def wait_serving(setup: Setup) -> ServerProcess:
    server = setup.server
    server.wait_serving()
    server.wait_for(
        lambda: (
            served_version(server, "alpha", "canary") == 2 and served_version(server, "beta") == 2
        ),
        what="the standard config",
    )
    return server


def test_two_models_three_versions_and_labels_serve(setup: Setup) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    assert server.version_states("alpha") == {1: AVAILABLE, 2: AVAILABLE, 3: AVAILABLE}
    assert server.version_states("beta") == {2: AVAILABLE}  # latest, one version
    assert served_version(server, "alpha") == 3
    assert served_version(server, "alpha", "stable") == 1
    assert served_version(server, "alpha", "canary") == 2
    # Labels work in GetModelMetadata and GetModelStatus too.
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name, metadata.model_spec.version_label = "alpha", "stable"
    assert server.predict_stub.GetModelMetadata(metadata, timeout=10).model_spec.version.value == 1
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name, status.model_spec.version_label = "alpha", "canary"
    [only] = server.model_stub.GetModelStatus(status, timeout=10).model_version_status
    assert only.version == 2 and only.state == AVAILABLE
    with pytest.raises(grpc.RpcError) as info:
        predict(server, "alpha", "prod")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: prod" in info.value.details()


def test_editing_the_file_moves_canary_within_two_poll_periods(setup: Setup) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    written = setup.apply_config(setup.standard(canary=3))
    seen = []

    def moved() -> bool:
        seen.append(served_version(server, "alpha", "canary"))
        return seen[-1] == 3

    eventually(moved, 4 * CONFIG_POLL_S, 0.02, lambda: f"canary on 3: {seen}")
    moved_after = time.monotonic() - written
    assert set(seen) <= {2, 3}, seen  # never an error while the label moved
    assert moved_after < 2 * CONFIG_POLL_S, f"canary moved after {moved_after:.2f}s"
    print(f"canary moved {moved_after:.3f}s after the edit (poll period {CONFIG_POLL_S}s)")
    assert served_version(server, "alpha", "stable") == 1


def test_a_bad_edit_is_logged_and_the_last_good_config_keeps_serving(setup: Setup) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    before = server.log_text().count("model_config_rejected")
    setup.file.write_text('model_config_list {\n  config { name: "alpha" base_pth: "/x" }\n}\n')
    server.wait_for(
        lambda: server.log_text().count("model_config_rejected") > before,
        timeout=10,
        what="the rejection in the log",
    )
    time.sleep(CONFIG_POLL_S)  # another poll: still rejected, still logged only once
    rejected = [
        json.loads(line)
        for line in server.log_text().splitlines()
        if '"model_config_rejected"' in line
    ][before:]
    assert len(rejected) == 1
    assert rejected[0]["error"].startswith(f"{PARSE_ERROR_PREFIX}{setup.file}:2:")
    assert "base_pth" in rejected[0]["error"]
    assert served_version(server, "alpha", "canary") == 2
    assert served_version(server, "beta") == 2
    setup.apply_config(setup.standard())


def test_adding_and_removing_models_through_the_file(setup: Setup) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    gamma = model_entry(
        "gamma", setup.root / "alpha", "model_version_policy { specific { versions: 1 } }"
    )
    setup.apply_config(model_entry("alpha", setup.root / "alpha", "", stable=3), gamma)
    server.wait_for(
        lambda: (
            server.version_states("beta") == {2: END}
            and served_version(server, "gamma") == 1
            and server.version_states("alpha") == {1: END, 2: END, 3: AVAILABLE}
        ),
        what="beta removed, gamma added, alpha latest only",
    )
    assert served_version(server, "alpha", "stable") == 3
    assert served_version(server, "beta") == "NOT_FOUND"
    server.wait_serving()  # health follows the config: beta is no longer required
    names = [m.name for m in list_models(server).models]
    assert names == ["alpha", "gamma"]
    setup.apply_config(setup.standard())
    wait_serving(setup)


def test_label_set_before_its_version_exists_resolves_once_it_is_available(
    setup: Setup, trained_models: TrainedModels
) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    beta = model_entry("beta", setup.root / "beta", "", next=7)
    alpha = setup.standard().split("\n")[0] + "\n"
    setup.apply_config(alpha, beta)
    server.wait_for(
        lambda: served_version(server, "beta", "next") == "NOT_FOUND",
        what="the label recorded while version 7 does not exist",
    )
    copy_as(trained_models, 1, setup.root / "beta", 7)
    server.wait_for(lambda: served_version(server, "beta", "next") == 7, what="label on 7")
    shutil.rmtree(setup.root / "beta" / "7")  # un-aspired: beta goes back to version 2
    server.wait_for(lambda: served_version(server, "beta") == 2, what="beta back on 2")
    setup.apply_config(setup.standard())
    wait_serving(setup)


def test_list_models(setup: Setup) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    reply = list_models(server)
    by_name = {m.name: m for m in reply.models}
    assert list(by_name) == ["alpha", "beta"]
    alpha = by_name["alpha"]
    assert alpha.base_path == str(setup.root / "alpha") and alpha.platform == "tensorflow"
    assert alpha.configured
    assert [(v.version, v.state) for v in alpha.versions if v.state != "end"] == [
        (1, "available"),
        (2, "available"),
        (3, "available"),
    ]
    labels = {lab.label: (lab.version, lab.configured_version, lab.serving) for lab in alpha.labels}
    assert labels == {"stable": (1, 1, True), "canary": (2, 2, True)}
    [beta] = list_models(server, "beta").models
    assert beta.name == "beta"
    with pytest.raises(grpc.RpcError) as info:
        list_models(server, "nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_describes_the_listing_service(setup: Setup) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(setup.server.channel))
    service = pool.FindServiceByName(model_listing.SERVICE_NAME)
    [method] = service.methods
    assert method.name == "ListModels"
    assert method.output_type.full_name == "pyserving.ListModelsResponse"
    model_info = pool.FindMessageTypeByName("pyserving.ModelInfo")
    assert {"name", "versions", "labels", "base_path"} <= set(model_info.fields_by_name)
    version_info = pool.FindMessageTypeByName("pyserving.VersionInfo")
    assert set(version_info.fields_by_name) == {"version", "state", "error", "fingerprint"}


def test_reload_config_rpc_adds_removes_and_reports_failures(
    setup: Setup, trained_models: TrainedModels
) -> None:
    server = setup.server
    setup.apply_config(setup.standard())
    wait_serving(setup)
    broken = setup.root / "broken"
    copy_as(trained_models, 1, broken, 1)
    (broken / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")

    def reload(*entries: str) -> model_management_pb2.ReloadConfigResponse:
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(f"model_config_list {{ {''.join(entries)} }}", request.config)
        return server.model_stub.HandleReloadConfigRequest(request, timeout=60)

    alpha = model_entry("alpha", setup.root / "alpha", "model_version_policy { latest {} }")
    gamma = model_entry("gamma", setup.root / "beta", "model_version_policy { all {} }")
    reply = reload(alpha, gamma)  # answers once gamma's versions are available
    assert reply.status.error_code == 0
    assert server.version_states("gamma") == {1: AVAILABLE, 2: AVAILABLE}
    assert set(server.version_states("beta").values()) == {END}
    assert served_version(server, "alpha") == 3

    with pytest.raises(grpc.RpcError) as info:
        reload(alpha, model_entry("broken", broken))
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details().startswith("model broken version 1: ")
    assert served_version(server, "alpha") == 3  # the others keep serving

    with pytest.raises(grpc.RpcError) as info:
        reload(model_entry("alpha", setup.root / "alpha").replace("tensorflow", "onnx"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown model_platform 'onnx'" in info.value.details()
    empty = model_management_pb2.ReloadConfigRequest()
    with pytest.raises(grpc.RpcError) as info:
        server.model_stub.HandleReloadConfigRequest(empty, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert served_version(server, "alpha") == 3  # refused configs changed nothing

    setup.apply_config(setup.standard())  # the file wins again on its next change
    wait_serving(setup)
    assert server.version_states("gamma") == {1: END, 2: END}


def test_config_file_errors_at_startup(tmp_path: Path) -> None:

    config = tmp_path / "models.config"
    for text, message in [
        # TF Serving's wording, which scripts look for, then file:line:col and the reason.
        ('model_config_list {\n  config {\n    name: "a" base_path: "/a"\n  }\n  oops\n}\n',
         f"{PARSE_ERROR_PREFIX}{config}:5:3: "),
        ('model_config_list { config { name: "a" base_path: "/a" model_platform: "onnx" } }',
         "unknown model_platform 'onnx'; known platforms: python, tensorflow"),
    ]:  # fmt: skip
        config.write_text(text)
        assert message in refused_start(f"--model_config_file={config}")
