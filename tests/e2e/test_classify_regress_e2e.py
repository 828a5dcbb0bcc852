"""Classify, Regress, MultiInference, Predict and metadata over gRPC on real servers.

Done-when of the issue: a TF1-style SavedModel with classify, regress and predict
signatures, made here by tf.compat.v1 code, answers all three APIs as TF Serving
documents (served with --enable_signature_method_name_check, which such models pass).
A TF2 model is served with the default (no method-name check), as TF Serving serves
native TF2 classifiers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tests.e2e.conftest import FAST_FLAGS
from tests.example_models import (
    LABELS,
    example,
    expected_scores,
    export_tf1_model,
    export_tf2_model,
)
from tests.util.processes import ServerProcess

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def serve(tmp: Path, model: str, export, *flags: str, workers: int = 0) -> ServerProcess:
    export(tmp / "models" / "1")
    process = ServerProcess(
        [f"--model_name={model}", f"--model_base_path={tmp / 'models'}", *FAST_FLAGS, *flags],
        tmp / "server.log",
        workers=workers,
    )
    process.wait_serving()
    return process


@pytest.fixture(scope="module")
def tf1(tmp_path_factory: pytest.TempPathFactory, module_workers: int) -> Iterator[ServerProcess]:
    """Both ways: Classify, Regress, MultiInference and their errors (the TF2 model's
    cases are the same calls on another export, in-process only)."""
    process = serve(
        tmp_path_factory.mktemp("tf1"),
        "tf1",
        export_tf1_model,
        "--enable_signature_method_name_check=true",
        workers=module_workers,
    )
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def tf2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = serve(tmp_path_factory.mktemp("tf2"), "tf2", export_tf2_model)
    yield process
    assert process.stop() == 0


@pytest.fixture
def servers(tf1: ServerProcess, tf2: ServerProcess) -> dict[str, ServerProcess]:
    """By name, for tests parametrized over both (tf1 runs both ways, so these do too)."""
    return {"tf1": tf1, "tf2": tf2}


def classify_request(model: str, signature: str = "", xs=(1.0, -1.0)):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def regress_request(model: str, signature: str, xs=(1.0, 2.5)):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=30)
    return error.value


@pytest.mark.parametrize(("server", "model"), [("tf1", "tf1"), ("tf2", "tf2")])
def test_classify(server: str, model: str, servers: dict[str, ServerProcess]) -> None:
    process = servers[server]
    reply = process.predict_stub.Classify(classify_request(model), timeout=30)
    assert (reply.model_spec.name, reply.model_spec.version.value) == (model, 1)
    assert reply.model_spec.signature_name == "serving_default"
    for x, result in zip((1.0, -1.0), reply.result.classifications, strict=True):
        assert [c.label for c in result.classes] == list(LABELS)
        np.testing.assert_allclose([c.score for c in result.classes], expected_scores(x), 1e-5)


@pytest.mark.parametrize(("server", "signature"), [("tf1", "regress_x"), ("tf2", "regress")])
def test_regress(server: str, signature: str, servers: dict[str, ServerProcess]) -> None:
    process = servers[server]
    reply = process.predict_stub.Regress(regress_request(server, signature), timeout=30)
    assert [r.value for r in reply.result.regressions] == [2.0, 5.0]
    assert reply.model_spec.signature_name == signature


def test_classify_with_context(tf1: ServerProcess) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tf1"
    request.input.example_list_with_context.context.CopyFrom(example(0.0, bias=1.5))
    request.input.example_list_with_context.examples.extend([example(1.0), example(-2.0)])
    reply = tf1.predict_stub.Classify(request, timeout=30)
    for x, result in zip((1.0, -2.0), reply.result.classifications, strict=True):
        got = [c.score for c in result.classes]
        np.testing.assert_allclose(got, expected_scores(x, bias=1.5), 1e-5)


def test_predict_on_the_tf1_model(tf1: ServerProcess) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tf1"
    request.model_spec.signature_name = "predict_x"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([0.5, 3.0], np.float32)))
    reply = tf1.predict_stub.Predict(request, timeout=30)
    assert list(reply.outputs["y"].float_val) == [1.0, 6.0]


def test_multi_inference(tf1: ServerProcess) -> None:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x", CLASSIFY), ("regress_x", REGRESS)):
        task = request.tasks.add()
        task.model_spec.name = "tf1"
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.extend([example(1.0), example(0.0)])
    reply = tf1.predict_stub.MultiInference(request, timeout=30)
    classify, regress = reply.results
    assert classify.model_spec.signature_name == "classify_x"
    assert len(classify.classification_result.classifications) == 2
    assert [r.value for r in regress.regression_result.regressions] == [2.0, 0.0]
    assert regress.model_spec.version.value == 1


def test_metadata_shows_every_kind_of_signature(tf1: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tf1"
    request.metadata_field.append("signature_def")
    reply = tf1.predict_stub.GetModelMetadata(request, timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(defs)
    methods = {name: d.method_name for name, d in defs.signature_def.items()}
    assert methods["serving_default"] == methods["classify_x"] == CLASSIFY
    assert methods["regress_x"] == REGRESS
    assert methods["predict_x"] == "tensorflow/serving/predict"


def test_errors_keep_tf_servings_codes_and_words(tf1: ServerProcess, tf2: ServerProcess) -> None:
    wrong_kind = rpc_error(tf1.predict_stub.Classify, classify_request("tf1", "regress_x"))
    assert wrong_kind.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wrong_kind.details() == (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/regress"
    )
    # without the method-name check (tf2 server) the signature's shape decides
    no_inputs = rpc_error(tf2.predict_stub.Regress, regress_request("tf2", "serving_default"))
    assert no_inputs.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert no_inputs.details() == "Expected one output Tensor."
    misshapen = rpc_error(tf1.predict_stub.Regress, regress_request("tf1", "regress_two_columns"))
    assert misshapen.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert misshapen.details() == (
        "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"
    )
    empty = classify_request("tf1", xs=())
    assert rpc_error(tf1.predict_stub.Classify, empty).details() == "Input is empty."
    unknown = rpc_error(tf1.predict_stub.Classify, classify_request("nope"))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    # the server still answers
    assert tf1.predict_stub.Classify(classify_request("tf1"), timeout=30).result.classifications
