"""TF Serving's REST API against one real server with the example model: every route and
format answers what gRPC answers for the same input (scores compared exactly), each bad
request gets TF Serving's HTTP status and a message, and the limits hold without the
server's memory jumping."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    prediction_service_pb2_grpc,
)

from pyserving.api.tfserving.rest_api import PRINT_DEFAULTS
from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.processes import ServerProcess, serving
from tests.util.requirements import optional_binary

MiB = 1 << 20


class RestServer(ServerProcess):
    """A server with REST on (`url`, `call`); the REST suite's also has the socket path it
    serves gRPC on and the folder a traversal would reach."""

    socket_path: Path
    evil: Path

    def __init__(self, args: list[str], log_path: Path, workers: int = 0, **options: Any) -> None:
        super().__init__(args, log_path, workers=workers, rest=True, **options)

    def rss_kib(self) -> int:
        return self.figures().rss_kib


@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory, module_workers: int
) -> Iterator[RestServer]:
    tmp = tmp_path_factory.mktemp("rest")
    trained_models.copy_version(2, tmp / "models")
    # A model folder a path traversal from the served one would reach: it must stay unread.
    trained_models.copy_version(1, tmp / "evil")
    with serving(
        [
            "--model_name=mnist",
            f"--model_base_path={tmp / 'models'}",
            f"--grpc_socket_path={tmp / 'grpc.sock'}",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=600000,grpc.so_reuseport=0",
            *FAST_FLAGS,
        ],
        tmp / "server.log",
        module_workers,
        server_class=RestServer,
    ) as process:
        process.socket_path = tmp / "grpc.sock"
        process.evil = tmp / "evil"
        yield process


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 64), dtype=np.float32)


def grpc_scores(server: ServerProcess, batch: np.ndarray, version: int | None = None):
    reply = server.predict_stub.Predict(predict_request(batch, version=version), timeout=30)
    return tf.make_ndarray(reply.outputs["scores"])


def test_curl_predict_returns_the_grpc_scores(
    server: RestServer, trained_models: TrainedModels
) -> None:
    """The done-when: curl -d '{"instances": [[...]]}' .../v1/models/mnist:predict."""
    image = trained_models.dataset.test_images[:1].astype(np.float32)
    body = json.dumps({"signature_name": "predict_images", "instances": image.tolist()})
    curl = optional_binary("curl", "apt-get install curl")
    if curl:
        out = subprocess.run(
            [curl, "-sS", "-d", body, server.url("/v1/models/mnist:predict")],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        reply = json.loads(out)
    else:  # pragma: no cover - curl is in CI's image (and required there)
        reply = server.call("/v1/models/mnist:predict", body.encode())[1]
    scores = np.array(reply["predictions"], dtype=np.float32)
    np.testing.assert_array_equal(scores, grpc_scores(server, image))


@pytest.mark.parametrize("path_version", [None, 2])
def test_row_and_columnar_formats_equal_grpc(server: RestServer, path_version) -> None:
    batch = images(5, seed=3)
    prefix = "/v1/models/mnist" + (f"/versions/{path_version}" if path_version else "")
    expected = grpc_scores(server, batch, version=path_version)
    status, row = server.call(
        f"{prefix}:predict",
        json.dumps({"signature_name": "predict_images", "instances": batch.tolist()}).encode(),
    )
    assert status == 200
    np.testing.assert_array_equal(np.array(row["predictions"], np.float32), expected)
    status, columnar = server.call(
        f"{prefix}:predict", json.dumps({"inputs": {"images": batch.tolist()}}).encode()
    )
    assert status == 200  # no signature_name: serving_default, the same model
    np.testing.assert_array_equal(np.array(columnar["outputs"], np.float32), expected)


def test_model_status_equals_grpc(server: RestServer) -> None:
    for path, version in (("/v1/models/mnist", None), ("/v1/models/mnist/versions/2", 2)):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "mnist"
        if version:
            request.model_spec.version.value = version
        reply_proto = server.model_stub.GetModelStatus(request, timeout=10)
        expected = json_format.MessageToDict(reply_proto, **PRINT_DEFAULTS)
        status, reply = server.call(path)
        assert status == 200
        assert reply["model_version_status"] == expected["model_version_status"]
        assert {s["state"] for s in reply["model_version_status"]} == {"AVAILABLE"}
        assert reply["model_version_status"][0]["status"] == {
            "error_code": "OK",
            "error_message": "",
        }


def test_metadata_equals_grpc(server: RestServer) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "mnist"
    request.model_spec.version.value = 2
    reply = server.predict_stub.GetModelMetadata(request, timeout=10)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signature_defs)
    expected = json_format.MessageToDict(signature_defs, preserving_proto_field_name=True)
    status, body = server.call("/v1/models/mnist/versions/2/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "mnist", "signature_name": "", "version": "2"}
    got = body["metadata"]["signature_def"]["signature_def"]
    assert set(got) == set(expected["signature_def"])
    assert got["predict_images"]["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert got["predict_images"]["method_name"] == "tensorflow/serving/predict"
    status, latest = server.call("/v1/models/mnist/metadata")
    assert status == 200 and latest["model_spec"]["version"] == "2"


ROW = json.dumps({"instances": [[0.5] * 64]}).encode()

BAD_REQUESTS = [
    ("both formats", "/v1/models/mnist:predict",
     b'{"instances": [[1]], "inputs": [[1]]}', 400, "only one of 'inputs' or 'instances'"),
    ("neither format", "/v1/models/mnist:predict", b'{"signature_name": ""}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("empty list", "/v1/models/mnist:predict", b'{"instances": []}', 400,
     "No values in 'instances' array"),
    ("ragged rows", "/v1/models/mnist:predict",
     json.dumps({"instances": [[0.5] * 64, [0.5] * 63]}).encode(), 400,
     "Failed to process element: 1 of 'instances' list. Error: Expecting shape [64] but got: [63]"),
    ("wrong type", "/v1/models/mnist:predict", b'{"instances": [["a"]]}', 400,
     'JSON Value: "a" Type: String is not of expected type: float'),
    ("not JSON", "/v1/models/mnist:predict", b"{instances: [1]", 400, "JSON Parse error"),
    ("empty body", "/v1/models/mnist:predict", b"", 400, "The document is empty"),
    ("wrong shape", "/v1/models/mnist:predict", b'{"instances": [[1.0, 2.0]]}', 400,
     "Matrix size-incompatible: In[0]: [1,2], In[1]: [64,10]"),  # the graph's, as TF Serving
    ("version and label", "/v1/models/mnist/versions/2/labels/stable:predict", ROW, 400,
     "give either /versions/N or /labels/LABEL, not both"),
    ("unknown label", "/v1/models/mnist/labels/canary:predict", ROW, 400,
     "Unrecognized servable version label: canary"),
    ("unknown signature", "/v1/models/mnist:predict",
     b'{"signature_name": "nope", "instances": [[1]]}', 400,
     'Serving signature name: "nope" not found'),
    ("unknown model", "/v1/models/nope:predict", ROW, 404,
     "Servable not found for request: Latest(nope)"),
    ("unknown version", "/v1/models/mnist/versions/7:predict", ROW, 404,
     "Servable not found for request: Specific(mnist, 7)"),
    ("unknown method", "/v1/models/mnist:explain", ROW, 400, "Malformed request"),
    ("unknown model status", "/v1/models/nope", None, 404,
     "Could not find any versions of model nope"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests(server: RestServer, path: str, body, status: int, message: str) -> None:
    got, reply = server.call(path, body)
    assert got == status, reply
    assert message in reply["error"]
    assert "Traceback" not in reply["error"]
    assert server.call("/v1/models/mnist:predict", ROW)[0] == 200  # still serving


@pytest.mark.parametrize(
    "name", ["..%2Fevil", "..%2F..%2Fevil", "%2E%2E%2Fevil", "..", "mnist%2F..%2F..%2Fevil"]
)
def test_traversal_names_are_looked_up_not_opened(server: RestServer, name: str) -> None:
    for path, body in ((f"/v1/models/{name}:predict", ROW), (f"/v1/models/{name}", None)):
        status, reply = server.call(path, body)
        assert status == 404, reply
    log = server.log_text()
    assert str(server.evil) not in log
    assert '"model": "evil"' not in log


def test_rest_requests_are_counted_with_grpcs(server: RestServer) -> None:
    server.call("/v1/models/mnist:predict", ROW)
    server.call("/v1/models/nope:predict", ROW)
    with urllib.request.urlopen(server.url("/monitoring/prometheus/metrics"), timeout=10) as r:
        text = r.read().decode()
    ok = 'pyserving_requests_total{api="rest_predict",code="OK",model="mnist"}'
    unknown = 'pyserving_requests_total{api="rest_predict",code="NOT_FOUND",model="_unknown_"}'
    assert ok in text and unknown in text
    assert 'model="nope"' not in text


def test_unix_socket_serves_grpc(server: RestServer) -> None:
    with grpc.insecure_channel(f"unix:{server.socket_path}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(predict_request(images(2)), timeout=30)
    np.testing.assert_array_equal(
        tf.make_ndarray(reply.outputs["scores"]), grpc_scores(server, images(2))
    )


def _declare_huge_body(port: int, declared: int, sent: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:  # the server closes with our unread bytes: a reset
            pass
        return data


def test_limits_refuse_without_the_memory_jumping(server: RestServer) -> None:
    server.call("/v1/models/mnist:predict", ROW)
    before = server.rss_kib()
    # REST: a body declared at 4 GiB, 16 KiB of it sent: 413 from the length alone.
    reply = _declare_huge_body(server.rest_port, 4 << 30, b"[" * 16384)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"--grpc_max_message_bytes" in reply
    # gRPC: a message over --grpc_max_message_bytes (64 MiB) is refused by gRPC itself.
    big = predict_request(np.zeros(((65 * MiB) // 256, 64), np.float32))
    with pytest.raises(grpc.RpcError) as info:
        server.predict_stub.Predict(big, timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A tensor whose shape claims 2^40 floats with 4 bytes of content: refused unallocated.
    lying = predict_request(np.zeros((1, 64), np.float32))
    lying.inputs["images"].tensor_shape.dim[0].size = 1 << 34
    lying.inputs["images"].tensor_content = b"\x00" * 4
    with pytest.raises(grpc.RpcError) as info:
        server.predict_stub.Predict(lying, timeout=30)
    assert info.value.code() in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "input 'images'" in info.value.details()
    after = server.rss_kib()
    # Generous: a read of the REST body or an allocation of the lying shape would be GiBs.
    assert after - before < 400 * 1024, (before, after)
    assert server.call("/v1/models/mnist:predict", ROW)[0] == 200
