"""How warm-up answers a recorded PredictionLog: the same plans as live requests, run by
the request core's executor on the load thread (`run_now`), before the version serves.

TF Serving runs predict, classify, regress and multi-inference logs; the record's
model name and version are ignored (the version being loaded answers), its signature
name and inputs are used as recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from pyserving.api.envelope import tensor_codec
from pyserving.api.envelope.tensor_budget import request_budget
from pyserving.api.tfserving.example_plans import plan_classify, plan_multi_inference, plan_regress
from pyserving.api.tfserving.handlers import predict_plan
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import PlanOptions, RequestPlan, run_now
from pyserving.engine.servable import Servable


def make_warmup_answer(
    options: PlanOptions,
) -> Callable[[Servable, prediction_log_pb2.PredictionLog, int], None]:
    """The warm-up `AnswerRecord` for a server with these request options."""

    def answer(servable: Servable, record: prediction_log_pb2.PredictionLog, version: int) -> None:
        run_now(servable, plan_for(servable, record, options), version)

    return answer


def predict_request_plan(
    servable: Servable, request: predict_pb2.PredictRequest, options: PlanOptions
) -> RequestPlan[predict_pb2.PredictResponse]:
    """A recorded PredictRequest as the plan a live one would be (decoded, then checked)."""
    inputs = tensor_codec.decode_inputs(request.inputs, request_budget(options))
    return predict_plan(servable, request, inputs)


def plan_for(
    servable: Servable, record: prediction_log_pb2.PredictionLog, options: PlanOptions
) -> RequestPlan[Message]:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        return predict_request_plan(servable, record.predict_log.request, options)
    if kind == "classify_log":
        return plan_classify(servable, record.classify_log.request, options)
    if kind == "regress_log":
        return plan_regress(servable, record.regress_log.request, options)
    if kind == "multi_inference_log":
        return plan_multi_inference(servable, record.multi_inference_log.request, options)
    raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
