"""TF Serving's own test model, half_plus_two (x declared [-1,1], y = 0.5x + 2), answers
over gRPC and REST exactly what `tensorflow_model_server` answers, with and without
batching: requests of shape [1] and [3] run (the graph broadcasts), and what the graph
refuses comes back INVALID_ARGUMENT with TensorFlow's message."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, regression_pb2

from tests.e2e.conftest import FAST_FLAGS
from tests.e2e.test_rest_e2e import RestServer
from tests.example_models import (
    export_half_plus_two_tf1,
    export_half_plus_two_tf2,
    half_plus_two,
    x_example,
)

MODELS = ("half_plus_two", "half_plus_two_tf2")


@pytest.fixture(
    scope="module",
    params=[("unbatched", 0), ("batched", 0), ("batched", 2)],
    ids=["unbatched", "batched", "batched-workers2"],
)
def server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[RestServer]:
    batching_mode, workers = request.param
    tmp = tmp_path_factory.mktemp(f"hpt_{batching_mode}_{workers}")
    export_half_plus_two_tf1(tmp / MODELS[0] / "1")
    export_half_plus_two_tf2(tmp / MODELS[1] / "1")
    config = tmp / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(f'  config {{ name: "{m}" base_path: "{tmp / m}" }}\n' for m in MODELS)
        + "}\n"
    )
    flags = [f"--model_config_file={config}", *FAST_FLAGS]
    if batching_mode == "batched":
        batching = tmp / "batching.config"
        batching.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 2000 }")
        flags += ["--enable_batching", f"--batching_parameters_file={batching}"]
    process = RestServer(flags, tmp / "server.log", workers=workers)
    try:
        process.wait_serving(timeout=120)
        yield process
    finally:
        assert process.stop() == 0


def predict(server: RestServer, model: str, x: np.ndarray) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return server.predict_stub.Predict(request, timeout=30)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("x", [[2.0], [2.0, 3.0, 4.0], [[2.0], [3.0]]], ids=["[1]", "[3]", "[2,1]"])
def test_grpc_predict_feeds_what_was_sent(server: RestServer, model: str, x) -> None:
    sent = np.array(x, np.float32)
    reply = predict(server, model, sent)
    y = tf.make_ndarray(reply.outputs["y"])
    assert y.shape == sent.shape  # TF Serving: x=[2.0] (shape [1]) answers y=[3.0]
    np.testing.assert_allclose(y, np.vectorize(half_plus_two)(sent))
    assert reply.model_spec.signature_name == "serving_default"
    assert reply.model_spec.version.value == 1


@pytest.mark.parametrize("model", MODELS)
def test_rest_row_format_instances(server: RestServer, model: str) -> None:
    body = json.dumps({"instances": [2.0, 3.0, 4.0]}).encode()
    status, reply = server.call(f"/v1/models/{model}:predict", body)
    assert (status, reply) == (200, {"predictions": [3.0, 3.5, 4.0]})


@pytest.mark.parametrize("model", MODELS)
def test_rest_columnar_inputs(server: RestServer, model: str) -> None:
    status, reply = server.call(
        f"/v1/models/{model}:predict", json.dumps({"inputs": {"x": [2.0, 3.0, 4.0]}}).encode()
    )
    assert (status, reply) == (200, {"outputs": [3.0, 3.5, 4.0]})
    status, reply = server.call(
        f"/v1/models/{model}:predict", json.dumps({"inputs": [[2.0], [4.0]]}).encode()
    )
    assert (status, reply) == (200, {"outputs": [[3.0], [4.0]]})


@pytest.mark.parametrize("model", MODELS)
def test_dtype_the_graph_refuses_is_invalid_argument(server: RestServer, model: str) -> None:
    with pytest.raises(grpc.RpcError) as error:
        predict(server, model, np.array([2.0], np.float64))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "actual double vs. expect float" in error.value.details()
    # REST converts JSON to the signature's dtype first, as TF Serving's json_tensor.cc does.
    status, reply = server.call(f"/v1/models/{model}:predict", b'{"instances": ["two"]}')
    assert status == 400 and "is not of expected type: float" in reply["error"]
    assert predict(server, model, np.array([2.0], np.float32)).outputs["y"].float_val == [3.0]


@pytest.mark.parametrize("model", MODELS)
def test_classify_and_regress_signatures(server: RestServer, model: str) -> None:
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = model
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.extend([x_example(2.0), x_example(4.0)])
    result = server.predict_stub.Classify(classify, timeout=30).result
    assert [[c.score for c in r.classes] for r in result.classifications] == [[3.0], [4.0]]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = model
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(x_example(3.0))
    result = server.predict_stub.Regress(regress, timeout=30).result
    assert [r.value for r in result.regressions] == [3.5]
    status, reply = server.call(
        f"/v1/models/{model}:regress",
        json.dumps({"signature_name": "regress_x_to_y", "examples": [{"x": [1.0]}]}).encode(),
    )
    assert (status, reply) == (200, {"results": [2.5]})
