"""tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

from __future__ import annotations

import time

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from pyserving.api import tensor_codec
from pyserving.api.grpc_errors import grpc_method
from pyserving.api.model_spec import fill_model_spec, parse_model_spec
from pyserving.engine.errors import invalid_argument
from pyserving.engine.inference import check_inputs, check_output_filter, select_signature
from pyserving.engine.runner import Runner
from pyserving.engine.servable_map import ServableMap

SIGNATURE_DEF_FIELD = "signature_def"


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The RPC's deadline on the `time.monotonic()` clock, or None when it has none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, servable_map: ServableMap, runner: Runner, max_elements: int) -> None:
        self._map = servable_map
        self._runner = runner
        self._max_elements = max_elements

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
        # TF Serving insists on metadata_field; an empty list asks for the only field there is.
        fields = list(request.metadata_field) or [SIGNATURE_DEF_FIELD]
        for field in fields:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(
                    f"Metadata field {field} is not supported; the supported field is "
                    f"{SIGNATURE_DEF_FIELD}"
                )
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            signature_defs = handle.servable.signature_def_map()
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        fill_model_spec(response.model_spec, spec.name, handle.version)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
        return response
