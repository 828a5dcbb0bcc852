"""The model repository extension through tritonclient's own gRPC and HTTP clients against
a real `pyserving serve --model_repository`: index, load, unload, a broken version,
loads and unloads beside traffic (replayed), --restricted_api, and the API off."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tensorflow_serving.apis import model_management_pb2, predict_pb2
from tritonclient.utils import InferenceServerException

from pyserving.adapters.protos import grpc_service_pb2, grpc_service_pb2_grpc
from tests.e2e.conftest import FAST_FLAGS
from tests.e2e.test_replay_e2e import pyserving_replay
from tests.example_models import export_half_plus_two_tf1, half_plus_two
from tests.util.processes import free_port
from tests.util.python_models import write_scaling_version
from tests.util.workers import both_modes

ADMIN = {"admin-key": "s3cret"}


@pytest.fixture(scope="module")
def half_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Serving's half_plus_two SavedModel, exported once for the module."""
    return export_half_plus_two_tf1(tmp_path_factory.mktemp("half") / "1")


@pytest.fixture
def repository(tmp_path: Path, half_export: Path) -> Path:
    """half (a SavedModel), py (python), broken (a saved_model.pb that is not one), and
    folders that are not models: no versions, hidden, a plain file."""
    root = tmp_path / "repository"
    shutil.copytree(half_export, root / "half" / "1")
    write_scaling_version(root / "py", 1, factor=2.0)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"\x00 not a SavedModel \xff" * 10)
    (root / "notes" / "drafts").mkdir(parents=True)
    write_scaling_version(root / ".staging-py3", 1, factor=3.0)
    (root / "README.txt").write_text("models live here")
    return root


def predict_half(server, x: float, **kwargs) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[x]], np.float32)))
    reply = server.predict_stub.Predict(request, timeout=30, **kwargs)
    return float(tf.make_ndarray(reply.outputs["y"])[0][0])


def predict_py(server, model: str = "py") -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0]], np.float32)))
    return list(server.predict_stub.Predict(request, timeout=30).outputs["y"].float_val)


def predict_code(server, fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        fn(server)
    return error.value.code()


def clients(server) -> tuple[triton_grpc.InferenceServerClient, triton_http.InferenceServerClient]:
    return (
        triton_grpc.InferenceServerClient(f"127.0.0.1:{server.port}"),
        triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}"),
    )


def start_repository_server(start_server, repository: Path, *flags: str):
    http_port = free_port()
    server = start_server(
        f"--model_repository={repository}", f"--rest_api_port={http_port}", *FAST_FLAGS, *flags
    )
    server.http_port = http_port
    server.wait_serving()
    return server


def index_of(client, headers: dict[str, str] | None = None) -> dict[str, tuple[str, str, str]]:
    """name → (version, state, reason), from either client's answer."""
    answer = client.get_model_repository_index(headers=headers)
    rows = (
        answer
        if isinstance(answer, list)
        else [
            {"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
            for m in answer.models
        ]
    )
    return {
        r["name"]: (r.get("version", ""), r.get("state", ""), r.get("reason", "")) for r in rows
    }


@both_modes
def test_index_load_and_unload_on_both_protocols(
    repository: Path, start_server, tmp_path: Path
) -> None:
    server = start_repository_server(start_server, repository)
    grpc_client, http_client = clients(server)
    assert "model_repository" in grpc_client.get_server_metadata().extensions
    assert "model_repository" in http_client.get_server_metadata()["extensions"]

    never_loaded = {"broken": ("", "", ""), "half": ("", "", ""), "py": ("", "", "")}
    assert index_of(grpc_client) == never_loaded  # notes, .staging-py3, README.txt: not models
    assert http_client.get_model_repository_index() == [
        {"name": "broken"},
        {"name": "half"},
        {"name": "py"},
    ]
    assert predict_code(server, lambda s: predict_half(s, 1.0)) == grpc.StatusCode.NOT_FOUND

    grpc_client.load_model("half")  # returns once the model serves
    assert predict_half(server, 3.0) == half_plus_two(3.0)
    http_client.load_model("py")
    assert predict_py(server) == [6.0]
    assert index_of(http_client)["half"] == ("1", "READY", "")
    assert index_of(grpc_client)["py"] == ("1", "READY", "")
    assert set(index_of(grpc_client)) == set(never_loaded)
    ready = grpc_client.get_model_repository_index(as_json=True)  # ready=False by default
    assert len(ready["models"]) == 3

    # a broken version: the load names the failure; what served keeps serving
    for client in (grpc_client, http_client):
        with pytest.raises(InferenceServerException) as failed:
            client.load_model("broken")
        assert "load failed for model 'broken'" in failed.value.message()
        assert "model broken version 1:" in failed.value.message()
        assert failed.value.status() in ("StatusCode.INVALID_ARGUMENT", "400")
        assert predict_half(server, 1.0) == half_plus_two(1.0)
        assert predict_py(server) == [6.0]
    version, state, reason = index_of(http_client)["broken"]
    assert (version, state) == ("1", "UNAVAILABLE") and reason, reason
    assert predict_code(server, lambda s: predict_py(s, "broken")) == grpc.StatusCode.NOT_FOUND

    # an unknown model, as Triton words it
    for client, name in ((grpc_client, "nosuch"), (http_client, "nosuch"), (grpc_client, "../py")):
        with pytest.raises(InferenceServerException) as unknown:
            client.load_model(name)
        assert f"failed to load '{name}', failed to poll" in unknown.value.message()
        assert unknown.value.status() in ("StatusCode.INTERNAL", "500")

    # bad bodies: 400 naming the problem, nothing changed
    base = f"http://127.0.0.1:{server.http_port}/v2/repository"
    for path, body, says in (
        ("index", b"[", "not valid JSON"),
        ("index", b'{"ready": "yes"}', '"ready" must be true or false'),
        ("models/half/unload", b'{"parameters": []}', '"parameters" must be a JSON object'),
        ("models/half/load", b'{"parameters": {"config": "{}"}}', "config are not supported"),
    ):
        status, answer = post(f"{base}/{path}", body=body)
        assert status == 400 and says in answer["error"], (path, answer)
    assert predict_half(server, 1.0) == half_plus_two(1.0)

    http_client.unload_model("half")  # returns once its versions have ended
    assert predict_code(server, lambda s: predict_half(s, 1.0)) == grpc.StatusCode.NOT_FOUND
    assert index_of(grpc_client)["half"] == ("1", "UNAVAILABLE", "unloaded")
    grpc_client.unload_model("py")
    assert predict_code(server, predict_py) == grpc.StatusCode.NOT_FOUND
    assert index_of(http_client)["py"] == ("1", "UNAVAILABLE", "unloaded")
    grpc_client.unload_model("py")  # not loaded: no error, as Triton

    grpc_client.load_model("py")  # loads again after an unload
    assert predict_py(server) == [6.0]
    assert index_of(grpc_client)["py"] == ("1", "READY", "")
    assert server.stop() == 0


@both_modes
def test_load_and_unload_beside_traffic_fail_nothing_and_replay(
    repository: Path, start_server, tmp_path: Path
) -> None:
    """--model_repository with --model_base_path: the first model serves under load from
    four threads while a second is loaded and unloaded on both protocols."""
    log = tmp_path / "events.jsonl"
    server = start_repository_server(
        start_server,
        repository,
        "--model_name=first",
        f"--model_base_path={repository / 'half'}",
        f"--event_log={log}",
    )
    grpc_client, http_client = clients(server)
    stop = threading.Event()
    answered, failures = [0] * 4, []

    def send(slot: int) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "first"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[float(slot)]], np.float32)))
        while not stop.is_set():
            try:
                reply = server.predict_stub.Predict(request, timeout=30)
                assert float(tf.make_ndarray(reply.outputs["y"])[0][0]) == half_plus_two(slot)
                answered[slot] += 1
            except Exception as exc:  # counted, and shown if any
                failures.append(repr(exc))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for load, unload in ((grpc_client, http_client), (http_client, grpc_client)):
            before = sum(answered)
            load.load_model("py")
            assert predict_py(server) == [6.0]
            unload.unload_model("py")
            assert predict_code(server, predict_py) == grpc.StatusCode.NOT_FOUND
            assert sum(answered) > before  # the first model answered meanwhile
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert min(answered) > 0
    assert server.stop() == 0

    replay = pyserving_replay(str(log))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "VERIFIED" in replay.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    origins = [r.get("origin") for r in records if r.get("kind") == "config_reloaded"]
    assert origins.count("RepositoryModelLoad") == 2
    assert origins.count("RepositoryModelUnload") == 2


def post(url: str, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, object]:
    """The status and the JSON body (the text when it is not JSON, as aiohttp's 404)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else {}
    except ValueError:
        return status, body.decode()


def reload_request(repository: Path) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name, config.base_path = "half", str(repository / "half")
    return request


@both_modes
def test_restricted_api_refuses_without_the_header_on_both_protocols(
    repository: Path, start_server
) -> None:
    server = start_repository_server(
        start_server, repository, "--restricted_api=model-repository,model-config:admin-key=s3cret"
    )
    grpc_client, http_client = clients(server)
    base = f"http://127.0.0.1:{server.http_port}/v2/repository"

    for client in (grpc_client, http_client):
        with pytest.raises(InferenceServerException) as denied:
            client.load_model("py")
        assert denied.value.status() in ("StatusCode.PERMISSION_DENIED", "403")
        assert "restricted, expecting header 'admin-key'" in denied.value.message()
        with pytest.raises(InferenceServerException):
            client.get_model_repository_index()
    status, body = post(f"{base}/models/py/unload")
    assert status == 403 and "expecting header 'admin-key'" in body["error"]
    assert post(f"{base}/index", {"admin-key": "wrong"})[0] == 403
    # nothing changed: py was never loaded
    assert index_of(grpc_client, ADMIN)["py"] == ("", "", "")
    assert index_of(http_client, ADMIN)["py"] == ("", "", "")
    assert predict_code(server, predict_py) == grpc.StatusCode.NOT_FOUND
    denials = [
        json.loads(line)
        for line in server.log_text().splitlines()
        if '"restricted_api_denied"' in line
    ]
    assert {d["api"] for d in denials} >= {
        "RepositoryModelLoad",
        "RepositoryIndex",
        "rest_repository_load",
        "rest_repository_unload",
        "rest_repository_index",
    }
    assert all(d["peer"] and d["level"] == "warning" for d in denials)

    # with the header: both protocols work (gRPC also takes Triton's spelling)
    grpc_client.load_model("py", headers=ADMIN)
    assert predict_py(server) == [6.0]  # inference needs no header
    http_client.unload_model("py", headers=ADMIN)
    assert predict_code(server, predict_py) == grpc.StatusCode.NOT_FOUND
    http_client.load_model("py", headers=ADMIN)
    grpc_client.unload_model("py", headers={"triton-grpc-protocol-admin-key": "s3cret"})
    status, rows = post(f"{base}/index", ADMIN)
    assert status == 200
    assert {"name": "py", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} in rows

    # TF Serving's reload RPC is in the model-config group
    with pytest.raises(grpc.RpcError) as refused:
        server.model_stub.HandleReloadConfigRequest(reload_request(repository), timeout=60)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert predict_code(server, lambda s: predict_half(s, 1.0)) == grpc.StatusCode.NOT_FOUND
    server.model_stub.HandleReloadConfigRequest(
        reload_request(repository), timeout=60, metadata=tuple(ADMIN.items())
    )
    assert predict_half(server, 2.0) == half_plus_two(2.0)
    assert server.stop() == 0


def test_repository_api_is_off_without_the_flag(repository: Path, start_server) -> None:
    http_port = free_port()
    server = start_server(
        "--model_name=py",
        f"--model_base_path={repository / 'py'}",
        "--model_platform=python",
        f"--rest_api_port={http_port}",
        *FAST_FLAGS,
    )
    server.wait_serving()
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
    for call, request in (
        (stub.RepositoryIndex, grpc_service_pb2.RepositoryIndexRequest()),
        (stub.RepositoryModelLoad, grpc_service_pb2.RepositoryModelLoadRequest(model_name="py")),
        (
            stub.RepositoryModelUnload,
            grpc_service_pb2.RepositoryModelUnloadRequest(model_name="py"),
        ),
    ):
        with pytest.raises(grpc.RpcError) as off:
            call(request, timeout=10)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    base = f"http://127.0.0.1:{http_port}/v2/repository"
    assert post(f"{base}/index")[0] == 404
    assert post(f"{base}/models/py/unload")[0] == 404
    metadata = triton_http.InferenceServerClient(f"127.0.0.1:{http_port}").get_server_metadata()
    assert metadata["extensions"] == ["binary_tensor_data"]  # ServerMetadata says it is off
    assert predict_py(server) == [6.0]  # still serving: the unload never ran
    assert server.stop() == 0
