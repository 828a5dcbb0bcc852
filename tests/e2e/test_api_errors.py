"""Predict, GetModelMetadata, GetModelStatus and health against one real server:
each bad request gets TF Serving's code and a message that names the problem, and the
server keeps answering afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.processes import ServerProcess, refused_start, serving


@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory, module_workers: int
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("api")
    trained_models.copy_version(1, tmp / "models")
    with serving(
        ["--model_name=mnist", f"--model_base_path={tmp / 'models'}", *FAST_FLAGS],
        tmp / "server.log",
        module_workers,
    ) as process:
        yield process


def image(n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).random((n, 64), dtype=np.float32)


def with_spec(request, model: str = "mnist", version: int | None = None, label: str = ""):
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    return request


def bad_requests() -> list[tuple[str, Callable[[], predict_pb2.PredictRequest], str, str]]:
    def missing_input() -> predict_pb2.PredictRequest:
        request = predict_request(image())
        request.inputs["pixels"].CopyFrom(request.inputs.pop("images"))
        return request

    def no_inputs() -> predict_pb2.PredictRequest:
        request = predict_request(image())
        del request.inputs["images"]
        return request

    def extra_input() -> predict_pb2.PredictRequest:
        request = predict_request(image())
        request.inputs["extra"].CopyFrom(tf.make_tensor_proto([1.0]))
        return request

    def wrong_dtype() -> predict_pb2.PredictRequest:
        request = predict_request(image())
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.ones((1, 64), np.int32)))
        return request

    def undecodable() -> predict_pb2.PredictRequest:
        request = predict_request(image())
        request.inputs["images"].tensor_content = b"\x00" * 7
        return request

    def unknown_output() -> predict_pb2.PredictRequest:
        request = predict_request(image())
        request.output_filter.append("logits")
        return request

    return [
        ("unknown model", lambda: predict_request(image(), model="nope"), "NOT_FOUND",
         "Servable not found for request: Latest(nope)"),
        ("unknown version", lambda: predict_request(image(), version=9), "NOT_FOUND",
         "Servable not found for request: Specific(mnist, 9)"),
        ("unknown signature", lambda: predict_request(image(), signature="classify"),
         "FAILED_PRECONDITION", 'Serving signature name: "classify" not found'),
        # TF Serving's own checks (predict_util.cc, saved_model/util.cc): the input keys only.
        ("missing input", missing_input, "INVALID_ARGUMENT",
         "Signature input alias: images(feed name: predict_images_images:0) not found in "
         "request and no default value provided. Inputs expected to be in the request {pixels}"),
        ("no inputs", lambda: no_inputs(), "INVALID_ARGUMENT",
         "input size does not match signature: 0!=1 len({}) != len({images}). Sent extra: {}. "
         "Missing but required: {images}."),
        ("extra input", extra_input, "INVALID_ARGUMENT", "Sent extra: {extra}"),
        # Dtype and shape are the graph's to refuse, as in TF Serving: TensorFlow's message.
        ("wrong dtype", wrong_dtype, "INVALID_ARGUMENT",
         "Type mismatch: actual int32 vs. expect float"),
        ("wrong shape", lambda: predict_request(np.ones((1, 3))), "INVALID_ARGUMENT",
         "Matrix size-incompatible: In[0]: [1,3], In[1]: [64,10]"),
        ("wrong rank", lambda: predict_request(np.ones((64,))), "INVALID_ARGUMENT",
         "In[0] and In[1] has different ndims: [64] vs. [64,10]"),
        ("undecodable tensor", undecodable, "INVALID_ARGUMENT",
         "input 'images': tensor_content has 7 bytes"),
        ("unknown output filter", unknown_output, "INVALID_ARGUMENT",
         "output tensor alias not found in signature: logits"),
        ("empty model name", lambda: predict_request(image(), model=""), "INVALID_ARGUMENT",
         "model_spec.name is empty"),
        ("unknown label", lambda: with_spec(predict_request(image()), label="canary"),
         "INVALID_ARGUMENT", "Unrecognized servable version label: canary"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [case[1:] for case in bad_requests()],
    ids=[case[0] for case in bad_requests()],
)
def test_bad_predict(server: ServerProcess, make, code: str, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        server.predict_stub.Predict(make(), timeout=10)
    assert info.value.code().name == code
    assert message in info.value.details()
    assert "Traceback" not in info.value.details()
    # ... and the server still answers.
    reply = server.predict_stub.Predict(predict_request(image()), timeout=10)
    assert reply.model_spec.version.value == 1


def test_predict_defaults_and_output_filter(server: ServerProcess) -> None:
    request = predict_request(image(3), signature="")  # empty name: serving_default
    request.output_filter.append("scores")
    reply = server.predict_stub.Predict(request, timeout=10)
    assert reply.model_spec.signature_name == "serving_default"
    scores = tf.make_ndarray(reply.outputs["scores"])
    assert scores.shape == (3, 10)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    assert list(reply.outputs) == ["scores"]


def test_metadata_with_nothing_but_the_model_name(server: ServerProcess) -> None:
    request = with_spec(get_model_metadata_pb2.GetModelMetadataRequest())
    reply = server.predict_stub.GetModelMetadata(request, timeout=10)
    assert reply.model_spec.name == "mnist" and reply.model_spec.version.value == 1
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(signature_defs)
    predict = signature_defs.signature_def["predict_images"]
    assert predict.method_name == "tensorflow/serving/predict"
    assert predict.inputs["images"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in predict.inputs["images"].tensor_shape.dim] == [-1, 64]
    assert [d.size for d in predict.outputs["scores"].tensor_shape.dim] == [-1, 10]
    assert "serving_default" in signature_defs.signature_def


@pytest.mark.parametrize(
    ("model", "field", "code", "message"),
    [
        ("nope", "signature_def", "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ("mnist", "graph", "INVALID_ARGUMENT", "Metadata field graph is not supported"),
    ],
)
def test_bad_metadata(
    server: ServerProcess, model: str, field: str, code: str, message: str
) -> None:
    request = with_spec(get_model_metadata_pb2.GetModelMetadataRequest(), model=model)
    request.metadata_field.append(field)
    with pytest.raises(grpc.RpcError) as info:
        server.predict_stub.GetModelMetadata(request, timeout=10)
    assert info.value.code().name == code and message in info.value.details()


def test_model_status(server: ServerProcess) -> None:
    request = with_spec(get_model_status_pb2.GetModelStatusRequest())
    reply = server.model_stub.GetModelStatus(request, timeout=10)
    [status] = reply.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0 and status.HasField("status")


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("nope", None, "Could not find any versions of model nope"),
        ("mnist", 7, "Could not find version 7 of model mnist"),
    ],
)
def test_status_not_found(
    server: ServerProcess, model: str, version: int | None, message: str
) -> None:
    request = with_spec(get_model_status_pb2.GetModelStatusRequest(), model=model, version=version)
    with pytest.raises(grpc.RpcError) as info:
        server.model_stub.GetModelStatus(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and info.value.details() == message


def test_health(server: ServerProcess) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    assert server.health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == serving
    check = health_pb2.HealthCheckRequest(service="mnist")
    assert server.health_stub.Check(check, timeout=5).status == serving
    with pytest.raises(grpc.RpcError) as info:
        server.health_stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(server: ServerProcess) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in reply.list_services_response.service}
    assert {
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
    } <= names


def test_missing_base_path_is_a_startup_error_that_says_what_to_do(tmp_path: Path) -> None:

    assert "--model_base_path" in refused_start("--model_name=mnist")
