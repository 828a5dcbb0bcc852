"""inference.GRPCInferenceService (the Open Inference Protocol, KServe v2): a codec around
the same request core as TF Serving's PredictionService.

A model is a served model, an input or output a key of its signature (`serving_default`,
or the request's `signature_name` parameter), a datatype a dtype (`BYTES` = DT_STRING).
`model_version` "" is the version selection's latest; a label is the `version_label`
parameter, as TF Serving's `model_spec.version_label`. ModelInfer is Predict: the same
plan, runner and batching, inside the same envelope (request id, metrics with the method
name as `api`, drain). Errors keep the core's codes (an unknown model is NOT_FOUND, as
Triton answers it); the datatype and shape of each input are checked against the
signature first, as Triton checks them against the model's config.

Only the inference and health RPCs live here; the repository extension registers its
own methods of the same service (`add_service(..., methods=...)`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc

import pyserving
from pyserving.adapters.protos import grpc_service_pb2
from pyserving.adapters.request_log.logger import NO_REQUEST_LOG, RequestLog
from pyserving.api.envelope import request_records as records
from pyserving.api.envelope.answer_provenance import (
    FINGERPRINT_PARAMETER,
    answer_metadata,
    described_version,
)
from pyserving.api.envelope.request_envelope import rpc_deadline
from pyserving.api.envelope.tensor_budget import request_budget
from pyserving.api.oip import codec as oip_codec
from pyserving.api.oip.handlers import (
    LABEL_PARAMETER,
    SERVER_NAME,
    SIGNATURE_PARAMETER,
    infer_prediction,
    label_parameter,
    model_request,
    output_order,
    server_ready,
    signature_parameter,
)
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.off_loop import off_loop_if_big
from pyserving.engine.request_core import (
    PlanOptions,
)

SERVICE = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
METHODS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
)
BINARY_PARAMETER = "binary_data"  # per requested output: false asks for typed contents


# ------------------------------------------------------------------ the servicer
class InferenceService:
    """The inference and health RPCs of inference.GRPCInferenceService."""

    def __init__(
        self,
        plane: DataPlane,
        options: PlanOptions,
        extensions: Sequence[str] = ("binary_tensor_data",),
        request_log: RequestLog = NO_REQUEST_LOG,
    ) -> None:
        self._log = request_log.log  # sampled answers become PredictionLog records (PredictLog)
        self._plane = plane
        self._options = options
        self._extensions = list(extensions)

    async def ServerLive(
        self,
        request: grpc_service_pb2.ServerLiveRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.ServerLiveResponse:
        return grpc_service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(
        self,
        request: grpc_service_pb2.ServerReadyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.ServerReadyResponse:
        return grpc_service_pb2.ServerReadyResponse(ready=await server_ready(self._plane))

    async def ModelReady(
        self,
        request: grpc_service_pb2.ModelReadyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.ModelReadyResponse:
        spec = model_request(request.name, request.version)
        return grpc_service_pb2.ModelReadyResponse(ready=await self._plane.model_ready(spec))

    async def ServerMetadata(
        self,
        request: grpc_service_pb2.ServerMetadataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.ServerMetadataResponse:
        return grpc_service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=pyserving.__version__, extensions=self._extensions
        )

    async def ModelMetadata(
        self,
        request: grpc_service_pb2.ModelMetadataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.ModelMetadataResponse:
        spec = model_request(request.name, request.version)
        response = await self._plane.model_metadata(spec)
        described = await described_version(self._plane, spec.name, spec.version, response.versions)
        if described is not None:
            context.set_trailing_metadata(answer_metadata(*described))
        return response

    async def ModelInfer(
        self,
        request: grpc_service_pb2.ModelInferRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.ModelInferResponse:
        parameters = request.parameters
        label = _parameter(parameters, LABEL_PARAMETER)
        signature = _parameter(parameters, SIGNATURE_PARAMETER)
        spec = model_request(request.model_name, request.model_version, label_parameter(label))
        signature_name = signature_parameter(signature)
        # The protocol has no "repeat the last value": the work is as big as the message.
        inputs = await off_loop_if_big(
            request.ByteSize(),
            oip_codec.decode_infer_inputs,
            request,
            request_budget(self._options),
        )
        requested = request.outputs
        wanted = [output.name for output in requested]
        raw = not requested or not all(_typed(output) for output in requested)
        model = spec.name
        prediction = await infer_prediction(
            self._plane, spec, signature_name, inputs, wanted, rpc_deadline(context)
        )
        response = grpc_service_pb2.ModelInferResponse(
            model_name=model, model_version=str(prediction.version), id=request.id
        )
        oip_codec.encode_infer_outputs(
            response, prediction.outputs, output_order(prediction, wanted), raw
        )
        if prediction.fingerprint:
            response.parameters[FINGERPRINT_PARAMETER].string_param = prediction.fingerprint
        context.set_trailing_metadata(answer_metadata(prediction.version, prediction.fingerprint))
        self._log(
            model,
            lambda: records.as_predict_log(
                spec,
                signature_name,
                inputs,
                records.predict_response(model, prediction),
                wanted,
                prediction.fingerprint,
            ),
        )
        return response


def _parameter(parameters: Mapping[str, grpc_service_pb2.InferParameter], key: str) -> Any:
    return oip_codec.parameter_value(parameters[key]) if key in parameters else None


def _typed(output: grpc_service_pb2.ModelInferRequest.InferRequestedOutputTensor) -> bool:
    """Whether a requested output says `binary_data: false` (typed contents, not raw)."""
    return _parameter(output.parameters, BINARY_PARAMETER) is False
