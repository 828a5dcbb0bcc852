"""TF Serving's calls, whatever carries them: what PredictionService (gRPC) and the /v1
REST routes both answer with, and the Predict plan SavedModel warm-up runs too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
)

from pyserving.api.envelope import request_records as records
from pyserving.api.envelope import tensor_codec
from pyserving.api.tfserving import tensor_content
from pyserving.api.tfserving.model_spec import ModelRequest, fill_model_spec
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import invalid_argument
from pyserving.engine.request_core import (
    Outputs,
    Prediction,
    RequestPlan,
    plan_predict,
)
from pyserving.engine.servable import Servable
from pyserving.engine.servable_map import ServableHandle

SIGNATURE_DEF_FIELD = "signature_def"


def encode_prediction(
    model: str, prediction: Prediction, as_content: bool = False
) -> predict_pb2.PredictResponse:
    """TF Serving's PredictResponse: the outputs in their typed value fields (AsProtoField,
    predict_util.cc's default), which clients read as `float_val` or with MakeNdarray; in
    `tensor_content` with `as_content` (--enable_serialization_as_tensor_content)."""
    encode = tensor_content.encode if as_content else tensor_codec.encode
    return records.predict_response(model, prediction, encode)


def predict_plan(
    servable: Servable,
    request: predict_pb2.PredictRequest,
    inputs: Mapping[str, np.ndarray],
    as_content: bool = False,
) -> RequestPlan[predict_pb2.PredictResponse]:
    """A PredictRequest (its inputs already decoded) as a plan answering a PredictResponse."""
    plan = plan_predict(servable, request.model_spec.signature_name, inputs, request.output_filter)
    model = request.model_spec.name

    def finish(results: Sequence[Outputs], served: ServableHandle) -> predict_pb2.PredictResponse:
        prediction = plan.finish(results, served)
        return encode_prediction(model, prediction, as_content)

    return RequestPlan(plan.calls, finish)


async def model_metadata(
    plane: DataPlane, spec: ModelRequest, fields: list[str]
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata's answer; shared by gRPC and REST (`GET /v1/models/NAME/metadata`)."""
    # TF Serving insists on metadata_field; an empty list asks for the only field there is.
    for field in fields or [SIGNATURE_DEF_FIELD]:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(
                f"Metadata field {field} is not supported; the supported field is "
                f"{SIGNATURE_DEF_FIELD}"
            )
    version, signature_defs = await plane.signature_defs(spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, spec.name, version)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_defs)
    return response
