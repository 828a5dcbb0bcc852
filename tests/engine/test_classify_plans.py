"""Classify, Regress and MultiInference requests against real TF1 and TF2 SavedModels.

In process (no server): the request plans the gRPC service and warm-up both use, on
models exported here with tf.compat.v1 (graph + Builder) and with tf.saved_model.save.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from pyserving.adapters.loaders.tensorflow_loader import TensorFlowLoader, TensorFlowServable
from pyserving.api.tfserving.example_input import serialized_examples
from pyserving.api.tfserving.example_plans import plan_classify, plan_multi_inference, plan_regress
from pyserving.api.tfserving.warmup_requests import predict_request_plan
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import PlanOptions, run_now
from tests.example_models import (
    LABELS,
    example,
    expected_scores,
    expected_z,
    export_tf1_model,
    export_tf2_model,
)

CHECKED = PlanOptions(method_name_check=True)
UNCHECKED = PlanOptions(method_name_check=False)


@pytest.fixture(scope="module")
def tf1(tmp_path_factory: pytest.TempPathFactory) -> TensorFlowServable:
    path = export_tf1_model(tmp_path_factory.mktemp("tf1") / "1")
    return TensorFlowLoader().load(str(path))


@pytest.fixture(scope="module")
def tf2(tmp_path_factory: pytest.TempPathFactory) -> TensorFlowServable:
    path = export_tf2_model(tmp_path_factory.mktemp("tf2") / "1")
    return TensorFlowLoader().load(str(path))


def classify_request(
    signature: str = "", xs=(1.0, -0.5)
) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def regress_request(signature: str, xs=(1.0, 3.0)) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def test_context_is_merged_into_every_example() -> None:
    from tensorflow_serving.apis import input_pb2

    request_input = input_pb2.Input()
    with_context = request_input.example_list_with_context
    with_context.context.CopyFrom(example(0.0, bias=10.0))
    with_context.examples.extend([example(1.0), example(2.0, bias=-1.0)])
    merged = [tf.train.Example.FromString(b) for b in serialized_examples(request_input)]
    assert [e.features.feature["x"].float_list.value[-1] for e in merged] == [1.0, 2.0]
    # protobuf merge: the context's bias reaches both, an example's own value wins
    assert [list(e.features.feature["bias"].float_list.value) for e in merged] == [[10.0], [-1.0]]


def test_empty_input_is_refused() -> None:
    with pytest.raises(ServingError, match=r"^Input is empty\.$") as error:
        serialized_examples(classification_pb2.ClassificationRequest().input)
    assert error.value.code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize("style", ["tf1", "tf2"])
def test_classify_shapes_results_as_tf_serving(style: str, request: pytest.FixtureRequest) -> None:
    servable = request.getfixturevalue(style)
    reply = run_now(servable, plan_classify(servable, classify_request(), UNCHECKED), 7)
    assert reply.model_spec.name == "m" and reply.model_spec.version.value == 7
    assert reply.model_spec.signature_name == "serving_default"
    assert len(reply.result.classifications) == 2
    for x, classifications in zip((1.0, -0.5), reply.result.classifications, strict=True):
        assert [c.label for c in classifications.classes] == list(LABELS)
        np.testing.assert_allclose(
            [c.score for c in classifications.classes], expected_scores(x), rtol=1e-5
        )


def test_classify_with_context_uses_the_context_features(tf1: TensorFlowServable) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "m"
    with_context = request.input.example_list_with_context
    with_context.context.CopyFrom(example(0.0, bias=-3.0))
    with_context.examples.extend([example(1.0), example(2.0)])
    reply = run_now(tf1, plan_classify(tf1, request, CHECKED), 1)
    for x, classifications in zip((1.0, 2.0), reply.result.classifications, strict=True):
        got = [c.score for c in classifications.classes]
        np.testing.assert_allclose(got, expected_scores(x, bias=-3.0), rtol=1e-5)


@pytest.mark.parametrize(
    ("style", "signature"), [("tf1", "regress_x"), ("tf1", "regress_flat"), ("tf2", "regress")]
)
def test_regress_gives_one_value_per_example(
    style: str, signature: str, request: pytest.FixtureRequest
) -> None:
    servable = request.getfixturevalue(style)
    reply = run_now(servable, plan_regress(servable, regress_request(signature), UNCHECKED), 3)
    assert [r.value for r in reply.result.regressions] == [expected_z(1.0), expected_z(3.0)]
    assert reply.model_spec.signature_name == signature


def test_predict_signature_of_tf1_model(tf1: TensorFlowServable) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "predict_x"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 4.0], np.float32)))
    reply = run_now(tf1, predict_request_plan(tf1, request, CHECKED), 1)
    assert list(reply.outputs["y"].float_val) == [2.0, 8.0]


def error_of(call) -> ServingError:
    with pytest.raises(ServingError) as error:
        call()
    return error.value


def test_wrong_kind_of_signature(tf1: TensorFlowServable, tf2: TensorFlowServable) -> None:
    checked = error_of(lambda: plan_classify(tf1, classify_request("regress_x"), CHECKED))
    assert (checked.code, checked.message) == (
        Code.INVALID_ARGUMENT,
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/regress",
    )
    # TF2 signatures all say "predict": with the check on, TF2 models cannot classify
    native = error_of(lambda: plan_classify(tf2, classify_request(), CHECKED))
    assert native.message.endswith("Was: tensorflow/serving/predict")
    missing_inputs = error_of(lambda: plan_regress(tf1, regress_request("predict_x"), UNCHECKED))
    assert missing_inputs.message.startswith("No regression inputs found in SignatureDef:")
    unknown = error_of(lambda: plan_regress(tf1, regress_request("nope"), UNCHECKED))
    assert unknown.message == "No signature was found with the name: nope"


def test_mismatched_output_shapes(tf1: TensorFlowServable) -> None:
    bad_scores = plan_classify(tf1, classify_request("classify_bad_scores"), UNCHECKED)
    error = error_of(lambda: run_now(tf1, bad_scores, 1))
    assert error.message == "Expected Tensor shape: [batch_size num_classes] but got [2]"
    two_columns = plan_regress(tf1, regress_request("regress_two_columns"), UNCHECKED)
    error = error_of(lambda: run_now(tf1, two_columns, 1))
    assert error.message == (
        "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"
    )


def test_example_missing_a_required_feature_is_the_clients_error(tf1: TensorFlowServable) -> None:
    request = classify_request()
    request.input.example_list.examples[0].features.feature.pop("x")
    error = error_of(lambda: run_now(tf1, plan_classify(tf1, request, CHECKED), 1))
    assert error.code is Code.INVALID_ARGUMENT and "x" in error.message


def multi_request(*tasks: tuple[str, str], model: str = "m") -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.extend([example(1.0), example(-2.0)])
    return request


CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def test_multi_inference_runs_each_task_on_the_same_input(tf1: TensorFlowServable) -> None:
    request = multi_request(("classify_x", CLASSIFY), ("regress_x", REGRESS))
    reply = run_now(tf1, plan_multi_inference(tf1, request, CHECKED), 4)
    classify, regress = reply.results
    assert classify.model_spec.signature_name == "classify_x"
    assert classify.model_spec.version.value == 4
    assert [c.label for c in classify.classification_result.classifications[1].classes] == list(
        LABELS
    )
    assert [r.value for r in regress.regression_result.regressions] == [2.0, -4.0]
    assert regress.model_spec.signature_name == "regress_x"


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        (
            [("classify_x", CLASSIFY), ("classify_x", CLASSIFY)],
            Code.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: classify_x",
        ),
        (
            [("nope", CLASSIFY)],
            Code.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            [("predict_x", "tensorflow/serving/predict")],
            Code.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (
            [("regress_x", CLASSIFY)],
            Code.INVALID_ARGUMENT,
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/regress",
        ),
    ],
)
def test_multi_inference_errors(
    tf1: TensorFlowServable, tasks: list, code: Code, message: str
) -> None:
    error = error_of(lambda: plan_multi_inference(tf1, multi_request(*tasks), CHECKED))
    assert (error.code, error.message) == (code, message)


def test_multi_inference_needs_one_model(tf1: TensorFlowServable) -> None:
    request = multi_request(("classify_x", CLASSIFY), ("regress_x", REGRESS))
    request.tasks[1].model_spec.name = "other"
    error = error_of(lambda: plan_multi_inference(tf1, request, CHECKED))
    assert error.message == (
        "All ModelSpecs in a MultiInferenceRequest must access the same model name."
    )


def test_metadata_keeps_every_kind_of_signature(tf1: TensorFlowServable) -> None:
    defs = tf1.signature_def_map().signature_def
    assert defs["classify_x"].method_name == CLASSIFY
    assert defs["regress_x"].method_name == REGRESS
    assert defs["predict_x"].method_name == "tensorflow/serving/predict"
    assert defs["classify_x"].inputs["inputs"].name == "tf_example:0"
