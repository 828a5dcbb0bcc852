"""The PredictionLog of an answered request, for the request log (`adapters/request_log`).

Builders only: the protocols call them lazily, through `RequestLog.log(model, build)`,
so nothing here runs for a request that is not sampled. Each returns a message of its
own (copies), since the writer thread serializes it after the request has moved on.
`log_metadata.model_spec` is the reply's: the model, the version that answered and the
signature that ran, as TF Serving's request logger records it. The answering version's
fingerprint rides in `log_metadata` as a field TF Serving does not define
(adapters/protos/log_provenance.proto): its readers skip it, `logged_fingerprint` reads it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import numpy as np
from google.protobuf.message import Message
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from pyserving.adapters.protos.log_provenance_pb2 import LogProvenance
from pyserving.api.envelope import tensor_codec
from pyserving.engine.request_core import ModelRequest, Prediction

PredictionLog: TypeAlias = prediction_log_pb2.PredictionLog

# The PredictionLog field of each kind of request.
PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE = (
    "predict_log",
    "classify_log",
    "regress_log",
    "multi_inference_log",
)


def logged(field: str, request: Message, response: Message, fingerprint: str = "") -> PredictionLog:
    """A gRPC (or already proto) request and its reply, copied into `field`."""
    record = PredictionLog()
    entry = getattr(record, field)
    entry.request.CopyFrom(request)
    entry.response.CopyFrom(response)
    record.log_metadata.model_spec.CopyFrom(answered_spec(response))
    _add_fingerprint(record, fingerprint)
    return record


def logged_fingerprint(record: PredictionLog) -> str:
    """The fingerprint a record was logged with ("" for none)."""
    metadata = record.log_metadata.SerializeToString()
    return LogProvenance.FromString(metadata).model_fingerprint


def _add_fingerprint(record: PredictionLog, fingerprint: str) -> None:
    if fingerprint:  # an unknown field of LogMetadata, kept when the record is serialized
        extra = LogProvenance(model_fingerprint=fingerprint).SerializeToString()
        record.log_metadata.MergeFromString(extra)


def with_path_version(
    field: str, request: Message, response: Message, spec: ModelRequest, fingerprint: str = ""
) -> PredictionLog:
    """A REST request (proto-built) with the version or label its URL named."""
    record = logged(field, request, response, fingerprint)
    _name_version(getattr(record, field).request.model_spec, spec)
    return record


def fill_model_spec(
    out: model_pb2.ModelSpec, name: str, version: int, signature_name: str | None = None
) -> None:
    """The ModelSpec of a reply: the model, the version that answered, its signature."""
    out.CopyFrom(_model_spec(name, version, signature_name))


@functools.lru_cache(maxsize=1024)
def _model_spec(name: str, version: int, signature_name: str | None) -> model_pb2.ModelSpec:
    # Made once per (model, version, signature): every reply carries one, and copying a
    # made message is one C call where setting its three fields is three (and a wrapper).
    spec = model_pb2.ModelSpec(name=name)
    spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name
    return spec


def predict_response(
    model: str,
    prediction: Prediction,
    encode: Callable[[np.ndarray, tensor_pb2.TensorProto], None] = tensor_codec.encode,
) -> predict_pb2.PredictResponse:
    """The PredictResponse TF Serving's gRPC gives for `prediction`: what every protocol's
    predict is logged with, and (with `encode` choosing the tensor form) what
    PredictionService answers."""
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, model, prediction.version, prediction.signature)
    outputs = response.outputs
    for name, array in prediction.outputs.items():
        encode(array, outputs[name])
    return response


def as_predict_log(
    spec: ModelRequest,
    signature_sent: str,
    inputs: Mapping[str, np.ndarray],
    response: predict_pb2.PredictResponse,
    output_filter: Sequence[str] = (),
    fingerprint: str = "",
) -> PredictionLog:
    """REST predict (or an Open Inference Protocol infer, whose requested outputs are the
    filter) as the PredictRequest gRPC would have carried, with the reply gRPC would have
    given (`predict_response`): TF Serving's tools read PredictLogs."""
    record = PredictionLog()
    request = record.predict_log.request
    request.model_spec.name = spec.name
    request.model_spec.signature_name = signature_sent
    _name_version(request.model_spec, spec)
    request.output_filter.extend(output_filter)
    for name, array in inputs.items():
        tensor_codec.encode(array, request.inputs[name])
    record.predict_log.response.CopyFrom(response)
    record.log_metadata.model_spec.CopyFrom(response.model_spec)
    _add_fingerprint(record, fingerprint)
    return record


def _name_version(out: model_pb2.ModelSpec, spec: ModelRequest) -> None:
    if spec.version is not None:
        out.version.value = spec.version
    elif spec.label:
        out.version_label = spec.label


def answered_spec(response: Message) -> model_pb2.ModelSpec:
    """The model, version (and signature) a Classify, Regress or MultiInference reply names."""
    if hasattr(response, "model_spec"):  # Predict, Classification, Regression responses
        return response.model_spec
    results = getattr(response, "results", ())  # MultiInferenceResponse: one per task
    if results:
        spec = model_pb2.ModelSpec()
        spec.CopyFrom(results[0].model_spec)
        spec.ClearField("signature_name")  # the tasks ran different signatures
        return spec
    return model_pb2.ModelSpec()
