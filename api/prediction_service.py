"""tensorflow.serving.PredictionService: Predict, Classify, Regress, MultiInference, metadata."""

from __future__ import annotations

import time

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

from pyserving.api import tensor_codec
from pyserving.api.grpc_errors import grpc_method
from pyserving.api.model_spec import ModelRequest, fill_model_spec, parse_model_spec
from pyserving.api.request_plans import (
    PlanOptions,
    RequestPlan,
    multi_inference_model_spec,
    plan_classify,
    plan_multi_inference,
    plan_regress,
)
from pyserving.engine.errors import invalid_argument
from pyserving.engine.inference import check_inputs, check_output_filter, select_signature
from pyserving.engine.runner import Runner
from pyserving.engine.servable_map import ServableHandle, ServableMap

SIGNATURE_DEF_FIELD = "signature_def"


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The RPC's deadline on the `time.monotonic()` clock, or None when it has none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def model_metadata(
    servable_map: ServableMap, spec: ModelRequest, fields: list[str]
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata's answer; shared by gRPC and REST (`GET /v1/models/NAME/metadata`)."""
    # TF Serving insists on metadata_field; an empty list asks for the only field there is.
    for field in fields or [SIGNATURE_DEF_FIELD]:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(
                f"Metadata field {field} is not supported; the supported field is "
                f"{SIGNATURE_DEF_FIELD}"
            )
    with servable_map.acquire(spec.name, spec.version, spec.label) as handle:
        signature_defs = handle.servable.signature_def_map()
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, spec.name, handle.version)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        servable_map: ServableMap,
        runner: Runner,
        max_elements: int,
        plan_options: PlanOptions | None = None,
    ) -> None:
        self._map = servable_map
        self._runner = runner
        self._max_elements = max_elements
        self._plan_options = plan_options or PlanOptions(max_elements=max_elements)

    @grpc_method
    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        spec = parse_model_spec(request.model_spec)
        inputs = tensor_codec.decode_inputs(request.inputs, self._max_elements)
        output_filter = list(request.output_filter)
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            signature = select_signature(handle.servable, request.model_spec.signature_name)
            check_inputs(signature, inputs)
            check_output_filter(signature, output_filter)
            outputs = await self._runner.run(
                handle, signature.name, inputs, output_filter, deadline=_deadline(context)
            )
        response = predict_pb2.PredictResponse()
        fill_model_spec(response.model_spec, spec.name, handle.version, signature.name)
        for name, array in outputs.items():
            tensor_codec.encode(array, response.outputs[name])
        return response

    @grpc_method
    async def GetModelMetadata(
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = parse_model_spec(request.model_spec)
        return model_metadata(self._map, spec, list(request.metadata_field))

    async def _run_plan(
        self, handle: ServableHandle, plan: RequestPlan, deadline: float | None
    ) -> Message:
        results = [
            await self._runner.run(
                handle, call.signature, call.inputs, call.output_filter, deadline=deadline
            )
            for call in plan.calls
        ]
        return plan.finish(results, handle.version)

    @grpc_method
    async def Classify(
        self,
        request: classification_pb2.ClassificationRequest,
        context: grpc.aio.ServicerContext,
    ) -> classification_pb2.ClassificationResponse:
        spec = parse_model_spec(request.model_spec)
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            plan = plan_classify(handle.servable, request, self._plan_options)
            return await self._run_plan(handle, plan, _deadline(context))

    @grpc_method
    async def Regress(
        self, request: regression_pb2.RegressionRequest, context: grpc.aio.ServicerContext
    ) -> regression_pb2.RegressionResponse:
        spec = parse_model_spec(request.model_spec)
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            plan = plan_regress(handle.servable, request, self._plan_options)
            return await self._run_plan(handle, plan, _deadline(context))

    @grpc_method
    async def MultiInference(
        self,
        request: inference_pb2.MultiInferenceRequest,
        context: grpc.aio.ServicerContext,
    ) -> inference_pb2.MultiInferenceResponse:
        spec = parse_model_spec(multi_inference_model_spec(request))
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            plan = plan_multi_inference(handle.servable, request, self._plan_options)
            return await self._run_plan(handle, plan, _deadline(context))
