"""How warm-up answers a recorded PredictionLog: through the same plans as live requests.

TF Serving replays predict, classify, regress and multi-inference logs; the record's
model name and version are ignored (the version being loaded answers), its signature
name and inputs are used as recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from tensorflow_serving.apis import prediction_log_pb2

from pyserving.api.request_plans import (
    PlanOptions,
    RequestPlan,
    plan_classify,
    plan_multi_inference,
    plan_predict,
    plan_regress,
    run_sync,
)
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Servable


def make_replay(
    options: PlanOptions,
) -> Callable[[Servable, prediction_log_pb2.PredictionLog, int], None]:
    """The warm-up `Replay` for a server with these request options."""

    def replay(servable: Servable, record: prediction_log_pb2.PredictionLog, version: int) -> None:
        run_sync(servable, plan_for(servable, record, options), version)

    return replay


def plan_for(
    servable: Servable, record: prediction_log_pb2.PredictionLog, options: PlanOptions
) -> RequestPlan:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        return plan_predict(servable, record.predict_log.request, options)
    if kind == "classify_log":
        return plan_classify(servable, record.classify_log.request, options)
    if kind == "regress_log":
        return plan_regress(servable, record.regress_log.request, options)
    if kind == "multi_inference_log":
        return plan_multi_inference(servable, record.multi_inference_log.request, options)
    raise ServingError(Code.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
