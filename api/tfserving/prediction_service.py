"""tensorflow.serving.PredictionService: a gRPC codec over the data plane.

Each method decodes its request, makes one call on the `DataPlane` (engine/data_plane.py),
which runs it against the version the request names, and encodes TF Serving's reply. The
request envelope (`add_service`) gives every method its request id, error mapping,
metrics and drain.
"""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from pyserving.adapters.request_log.logger import NO_REQUEST_LOG, RequestLog
from pyserving.api.envelope import request_records as records
from pyserving.api.envelope import tensor_codec
from pyserving.api.envelope.answer_provenance import answer_metadata
from pyserving.api.envelope.request_envelope import rpc_deadline
from pyserving.api.envelope.tensor_budget import request_budget
from pyserving.api.tfserving.example_plans import multi_inference_model_spec
from pyserving.api.tfserving.handlers import (
    encode_prediction,
    model_metadata,
)
from pyserving.api.tfserving.model_spec import parse_model_spec
from pyserving.engine.data_plane import DataPlane, InferCall
from pyserving.engine.request_core import (
    PlanOptions,
    Served,
)

M = TypeVar("M", bound=Message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        plane: DataPlane,
        options: PlanOptions,
        request_log: RequestLog = NO_REQUEST_LOG,
        as_tensor_content: bool = False,  # --enable_serialization_as_tensor_content
    ) -> None:
        self._plane = plane
        self._options = options
        self._as_content = as_tensor_content
        self._log = request_log.log  # sampled answers become PredictionLog records

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> predict_pb2.PredictResponse:
        spec = parse_model_spec(request.model_spec)
        inputs = await tensor_codec.decode_inputs_off_loop(
            request.inputs, request_budget(self._options)
        )
        call = InferCall(
            spec,
            request.model_spec.signature_name,
            inputs,
            request.output_filter,
            rpc_deadline(context),
        )
        prediction = await self._plane.infer(call)
        response = encode_prediction(spec.name, prediction, self._as_content)
        context.set_trailing_metadata(answer_metadata(prediction.version, prediction.fingerprint))
        fingerprint = prediction.fingerprint
        self._log(
            spec.name, lambda: records.logged(records.PREDICT, request, response, fingerprint)
        )
        return response

    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = parse_model_spec(request.model_spec)
        return await model_metadata(self._plane, spec, list(request.metadata_field))

    async def Classify(
        self,
        request: classification_pb2.ClassificationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> classification_pb2.ClassificationResponse:
        spec = parse_model_spec(request.model_spec)
        served = await self._plane.classify(spec, request, rpc_deadline(context))
        return self._answer(records.CLASSIFY, spec.name, request, served, context)

    async def Regress(
        self, request: regression_pb2.RegressionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> regression_pb2.RegressionResponse:
        spec = parse_model_spec(request.model_spec)
        served = await self._plane.regress(spec, request, rpc_deadline(context))
        return self._answer(records.REGRESS, spec.name, request, served, context)

    async def MultiInference(
        self,
        request: inference_pb2.MultiInferenceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> inference_pb2.MultiInferenceResponse:
        spec = parse_model_spec(multi_inference_model_spec(request))
        served = await self._plane.multi_inference(spec, request, rpc_deadline(context))
        return self._answer(records.MULTI_INFERENCE, spec.name, request, served, context)

    def _answer(
        self,
        field: str,
        model: str,
        request: Message,
        served: Served[M],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> M:
        """Classify's, Regress's or MultiInference's reply, with its provenance trailers,
        logged when sampled."""
        response, fingerprint = served
        version = records.answered_spec(response).version.value
        context.set_trailing_metadata(answer_metadata(version, fingerprint))
        self._log(model, lambda: records.logged(field, request, response, fingerprint))
        return response
