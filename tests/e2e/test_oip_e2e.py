"""The Open Inference Protocol against real `pyserving serve` processes, called by clients
nobody here wrote: tritonclient's gRPC and HTTP clients. Answers must equal TF Serving's
Predict on the same server (tensorflow_serving.apis stubs), over gRPC and HTTP, JSON and
binary, with and without batching; bad requests get the protocol's codes with messages
that name the problem, and the server keeps serving afterwards."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tritonclient.utils import InferenceServerException

from pyserving.adapters.protos import grpc_service_pb2, grpc_service_pb2_grpc
from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.processes import ServerProcess, serving

MODEL = "mnist"
SIGNATURE = "predict_images"
OIP_DATATYPES = {types_pb2.DT_FLOAT: "FP32", types_pb2.DT_INT64: "INT64"}


class OipServer(ServerProcess):
    def __init__(self, args: list[str], log_path: Path, workers: int = 0, **options: Any) -> None:
        super().__init__(args, log_path, workers=workers, rest=True, **options)

    def clients(
        self,
    ) -> tuple[triton_grpc.InferenceServerClient, triton_http.InferenceServerClient]:
        return (
            triton_grpc.InferenceServerClient(f"127.0.0.1:{self.port}"),
            triton_http.InferenceServerClient(f"127.0.0.1:{self.rest_port}"),
        )

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.rest_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.read().decode()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """TF Serving's Predict on the same server: the reference answer."""
        reply = self.predict_stub.Predict(predict_request(images, signature=SIGNATURE), timeout=30)
        return np.array(reply.outputs["scores"].float_val, np.float32).reshape(len(images), -1)


@contextmanager
def started(
    trained_models: TrainedModels, tmp: Path, *flags: str, workers: int = 0
) -> Iterator[OipServer]:
    trained_models.copy_version(2, tmp / "models")
    monitoring = tmp / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    with serving(
        [
            f"--model_name={MODEL}",
            f"--model_base_path={tmp / 'models'}",
            f"--monitoring_config_file={monitoring}",
            *FAST_FLAGS,
            *flags,
        ],
        tmp / "server.log",
        workers,
        server_class=OipServer,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory, module_workers: int
) -> Iterator[OipServer]:
    with started(
        trained_models,
        tmp_path_factory.mktemp("oip"),
        "--rest_api_enable_cors_support=true",
        workers=module_workers,
    ) as process:
        yield process


@pytest.fixture(scope="module")
def batching_server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OipServer]:
    tmp = tmp_path_factory.mktemp("oip_batching")
    config = tmp / "batching.config"
    config.write_text(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 20000 } "
        "num_batch_threads { value: 1 }"
    )
    with started(
        trained_models, tmp, "--enable_batching", f"--batching_parameters_file={config}"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def images(trained_models: TrainedModels) -> np.ndarray:
    return trained_models.dataset.test_images[:5].astype(np.float32)


def grpc_input(images: np.ndarray, datatype: str = "FP32") -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("images", list(images.shape), datatype)
    tensor.set_data_from_numpy(images)
    return tensor


def http_input(images: np.ndarray, binary: bool, datatype: str = "FP32") -> triton_http.InferInput:
    tensor = triton_http.InferInput("images", list(images.shape), datatype)
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


def assert_serving(server: OipServer, images: np.ndarray) -> None:
    grpc_client, http_client = server.clients()
    reply = grpc_client.infer(MODEL, [grpc_input(images)])
    np.testing.assert_array_equal(reply.as_numpy("scores"), server.predict(images))
    reply = http_client.infer(MODEL, [http_input(images, binary=True)])
    np.testing.assert_array_equal(reply.as_numpy("scores"), server.predict(images))


# ---------------------------------------------------------------------- health, metadata
def test_live_and_ready(server: OipServer) -> None:
    for client in server.clients():
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
        assert client.is_model_ready(MODEL, "2")
        assert not client.is_model_ready(MODEL, "1")
        assert not client.is_model_ready("no_such_model")
        metadata = client.get_server_metadata()
        name = metadata.name if hasattr(metadata, "name") else metadata["name"]
        assert name == "pyserving"


def test_reflection_describes_the_service(server: OipServer) -> None:
    """grpcurl and other reflection clients find the protocol's service on the port."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(server.channel))
    service = pool.FindServiceByName("inference.GRPCInferenceService")
    methods = {m.name: m for m in service.methods}
    assert methods["ModelInfer"].input_type.full_name == "inference.ModelInferRequest"
    assert {"ServerLive", "ServerReady", "ModelReady", "ModelMetadata"} <= set(methods)


def test_model_metadata_equals_the_signature(server: OipServer) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    reply = server.predict_stub.GetModelMetadata(request, timeout=10)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signature_defs)
    signature = signature_defs.signature_def["serving_default"]

    def expected(tensors: Any) -> list[dict[str, Any]]:
        return sorted(
            (
                {
                    "name": alias,
                    "datatype": OIP_DATATYPES[info.dtype],
                    "shape": [int(d.size) for d in info.tensor_shape.dim],
                }
                for alias, info in tensors.items()
            ),
            key=lambda t: t["name"],
        )

    grpc_client, http_client = server.clients()
    grpc_meta = grpc_client.get_model_metadata(MODEL, as_json=True)
    http_meta = http_client.get_model_metadata(MODEL)
    for meta in (grpc_meta, http_meta):
        assert meta["name"] == MODEL
        assert meta["versions"] == ["2"]
        assert meta["platform"] == "tensorflow_savedmodel"
        for key, tensors in (("inputs", signature.inputs), ("outputs", signature.outputs)):
            got = sorted(
                (
                    {
                        "name": t["name"],
                        "datatype": t["datatype"],
                        "shape": list(map(int, t["shape"])),
                    }
                    for t in meta[key]
                ),
                key=lambda t: t["name"],
            )
            assert got == expected(tensors)
    assert [-1, 64] in [t["shape"] for t in http_meta["inputs"]]  # the unknown batch dim


# ---------------------------------------------------------------------- infer
def test_grpc_infer_equals_predict(server: OipServer, images: np.ndarray) -> None:
    grpc_client, _ = server.clients()
    expected = server.predict(images)
    reply = grpc_client.infer(
        MODEL,
        [grpc_input(images)],
        model_version="2",
        outputs=[triton_grpc.InferRequestedOutput("scores")],
        request_id="req-7",
        parameters={"signature_name": SIGNATURE},
    )
    np.testing.assert_array_equal(reply.as_numpy("scores"), expected)
    response = reply.get_response()
    assert response.id == "req-7"
    assert response.model_name == MODEL and response.model_version == "2"
    assert [o.datatype for o in response.outputs] == ["FP32"]


def test_typed_contents_both_ways(server: OipServer, images: np.ndarray) -> None:
    """Typed `contents` in, and out when the requested output says binary_data false."""
    request = grpc_service_pb2.ModelInferRequest(model_name=MODEL, model_version="2")
    tensor = request.inputs.add(name="images", datatype="FP32", shape=images.shape)
    tensor.contents.fp32_contents.extend(images.ravel().tolist())
    request.outputs.add(name="scores").parameters["binary_data"].bool_param = False
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
    reply = stub.ModelInfer(request, timeout=30)
    assert not reply.raw_output_contents
    [output] = reply.outputs
    scores = np.array(output.contents.fp32_contents, np.float32).reshape(list(output.shape))
    np.testing.assert_array_equal(scores, server.predict(images))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_http_infer_equals_predict(server: OipServer, images: np.ndarray, binary: bool) -> None:
    _, http_client = server.clients()
    expected = server.predict(images)
    reply = http_client.infer(
        MODEL,
        [http_input(images, binary)],
        outputs=[triton_http.InferRequestedOutput("scores", binary_data=binary)],
        request_id="req-8",
        parameters={"signature_name": SIGNATURE},
    )
    np.testing.assert_array_equal(reply.as_numpy("scores"), expected)
    output = reply.get_output("scores")
    assert ("parameters" in output) is binary  # binary_data_size only when binary
    assert reply.get_response()["id"] == "req-8"
    # No outputs named: tritonclient asks for all of them in binary (binary_data_output).
    reply = http_client.infer(MODEL, [http_input(images, binary)], model_version="2")
    np.testing.assert_array_equal(reply.as_numpy("scores"), expected)
    # A compressed request body (tritonclient's request_compression_algorithm).
    reply = http_client.infer(
        MODEL, [http_input(images, binary)], request_compression_algorithm="gzip"
    )
    np.testing.assert_array_equal(reply.as_numpy("scores"), expected)


def test_requests_are_counted_per_protocol(server: OipServer, images: np.ndarray) -> None:
    assert_serving(server, images)
    text = server.metrics_text()
    for api in ("ModelInfer", "rest_v2_infer"):
        assert f'pyserving_requests_total{{api="{api}",code="OK",model="{MODEL}"}}' in text


def test_cors_preflight_and_headers(server: OipServer, images: np.ndarray) -> None:
    url = f"http://127.0.0.1:{server.rest_port}/v2/models/{MODEL}/infer"
    with urllib.request.urlopen(urllib.request.Request(url, method="OPTIONS"), timeout=10) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    body = {"inputs": [{"name": "images", "shape": [1, 64], "datatype": "FP32",
                        "data": images[0].tolist()}]}  # fmt: skip
    request = urllib.request.Request(url, data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.headers["Access-Control-Allow-Origin"] == "*"
        answer = json.loads(reply.read())
    [output] = answer["outputs"]
    assert output["shape"] == [1, 10]
    np.testing.assert_array_equal(
        np.array(output["data"], np.float32), server.predict(images[:1]).ravel()
    )


def test_batching_answers_equal_predict(batching_server: OipServer, images: np.ndarray) -> None:
    expected = batching_server.predict(images)

    def one(i: int) -> np.ndarray:
        grpc_client, http_client = batching_server.clients()
        if i % 2:
            return grpc_client.infer(MODEL, [grpc_input(images)]).as_numpy("scores")
        return http_client.infer(MODEL, [http_input(images, binary=i % 4 == 0)]).as_numpy("scores")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    for answer in answers:
        np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-7)
    # The batcher merged requests of both protocols: batches hold more rows than one request.
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(batching_server.metrics_text())
        for s in family.samples
        if s.name.startswith("pyserving_batch_size_")
    }
    assert samples["pyserving_batch_size_sum"] > 5 * samples["pyserving_batch_size_count"]


# ---------------------------------------------------------------------- errors
def grpc_error(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_unknown_model(server: OipServer, images: np.ndarray) -> None:
    grpc_client, http_client = server.clients()
    error = grpc_error(lambda: grpc_client.infer("no_such_model", [grpc_input(images)]))
    assert error.status() == "StatusCode.NOT_FOUND"
    assert "no_such_model" in error.message()
    error = grpc_error(lambda: http_client.infer("no_such_model", [http_input(images, True)]))
    assert error.status() == "404"
    assert "no_such_model" in error.message()
    error = grpc_error(lambda: grpc_client.get_model_metadata("no_such_model"))
    assert error.status() == "StatusCode.NOT_FOUND"
    assert_serving(server, images)


def test_wrong_datatype(server: OipServer, images: np.ndarray) -> None:
    grpc_client, http_client = server.clients()
    doubles = images.astype(np.float64)
    for error, status in (
        (
            grpc_error(lambda: grpc_client.infer(MODEL, [grpc_input(doubles, "FP64")])),
            "StatusCode.INVALID_ARGUMENT",
        ),
        (
            grpc_error(lambda: http_client.infer(MODEL, [http_input(doubles, False, "FP64")])),
            "400",
        ),
    ):
        assert error.status() == status
        assert "input 'images' has datatype FP64" in error.message()
        assert "expects FP32" in error.message()
    assert_serving(server, images)


def test_wrong_shape(server: OipServer, images: np.ndarray) -> None:
    grpc_client, http_client = server.clients()
    narrow = np.ascontiguousarray(images[:, :10])
    for error, status in (
        (
            grpc_error(lambda: grpc_client.infer(MODEL, [grpc_input(narrow)])),
            "StatusCode.INVALID_ARGUMENT",
        ),
        (grpc_error(lambda: http_client.infer(MODEL, [http_input(narrow, True)])), "400"),
    ):
        assert error.status() == status
        assert "input 'images' has shape [5,10]" in error.message()
        assert "expects [-1,64]" in error.message()
    # Declared shape and data disagree: the codec refuses before the model sees it.
    tensor = grpc_input(images)
    tensor.set_shape([5, 65])  # declared after the data, so tritonclient does not check it
    error = grpc_error(lambda: grpc_client.infer(MODEL, [tensor]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "1280 bytes of raw data but shape [5,65] of FP32 needs 1300" in error.message()
    assert_serving(server, images)


def test_bad_version_and_output(server: OipServer, images: np.ndarray) -> None:
    grpc_client, http_client = server.clients()
    error = grpc_error(lambda: grpc_client.infer(MODEL, [grpc_input(images)], model_version="v2"))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "model version 'v2' is not a version number" in error.message()
    error = grpc_error(
        lambda: http_client.infer(MODEL, [http_input(images, True)], model_version="9")
    )
    assert error.status() == "404"
    error = grpc_error(
        lambda: grpc_client.infer(
            MODEL, [grpc_input(images)], outputs=[triton_grpc.InferRequestedOutput("nope")]
        )
    )
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "nope" in error.message()
    error = grpc_error(
        lambda: grpc_client.infer(
            MODEL, [grpc_input(images)], parameters={"signature_name": "no_such_signature"}
        )
    )
    assert error.status() == "StatusCode.FAILED_PRECONDITION"
    assert "no_such_signature" in error.message()
    error = grpc_error(
        lambda: http_client.infer(
            MODEL, [http_input(images, True)], parameters={"version_label": "stable"}
        )
    )
    assert error.status() == "400"  # no labels are configured on this server
    assert "Unrecognized servable version label: stable" in error.message()
    assert_serving(server, images)
