"""The Open Inference Protocol's request reading: versions as strings, labels as a
parameter, and the model name every OIP message carries reaching the envelope's scope
(its metrics' `model` label and log lines)."""

from __future__ import annotations

import pytest
from tensorflow_serving.apis import predict_pb2

from pyserving.adapters.protos import grpc_service_pb2
from pyserving.api.envelope.request_envelope import requested_model
from pyserving.api.oip.handlers import label_parameter, model_request, signature_parameter
from pyserving.engine.errors import ServingError
from pyserving.engine.request_core import ModelRequest


def test_versions_are_strings_empty_meaning_latest() -> None:
    assert model_request("m", "") == ModelRequest("m", None, None)
    assert model_request("m", "7") == ModelRequest("m", 7, None)
    assert model_request("m", "", "stable") == ModelRequest("m", None, "stable")
    for bad in ("v1", "-1", "1.0", " 1", "\u0661", "9" * 19):
        with pytest.raises(ServingError, match="is not a version number") as caught:
            model_request("m", bad)
        assert caught.value.code.name == "INVALID_ARGUMENT"
    with pytest.raises(ServingError, match="give one of them"):
        model_request("m", "1", "stable")
    with pytest.raises(ServingError, match="model name is empty"):
        model_request("", "")


def test_parameters_must_be_strings() -> None:
    assert signature_parameter(None) == "serving_default"
    assert signature_parameter("") == "serving_default"
    assert signature_parameter("predict_images") == "predict_images"
    assert label_parameter(None) is None and label_parameter("") is None
    assert label_parameter("canary") == "canary"
    with pytest.raises(ServingError, match="signature_name parameter must be a string"):
        signature_parameter(3)
    with pytest.raises(ServingError, match="version_label parameter must be a string"):
        label_parameter(True)


def test_the_requested_model_reaches_the_envelope_for_every_protocol() -> None:
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "tfs"
    assert requested_model(predict) == "tfs"
    assert requested_model(grpc_service_pb2.ModelInferRequest(model_name="oip")) == "oip"
    assert requested_model(grpc_service_pb2.ModelReadyRequest(name="ready")) == "ready"
    assert requested_model(grpc_service_pb2.ModelMetadataRequest(name="meta")) == "meta"
    assert requested_model(grpc_service_pb2.ServerLiveRequest()) == ""
