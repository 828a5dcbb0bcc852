"""The data plane: what a protocol asks of the engine to answer an inference request.

A codec decodes its request, makes one call on a `DataPlane` and encodes the answer. The
call carries everything the engine needs (the model and its version or label, the
signature, the inputs as arrays, the output filter, the deadline) and returns everything
the reply needs (the outputs, the version that answered, the signature used), so a codec
cannot tell whether the engine is in its own process (`InProcessDataPlane`, the single
process of `--workers=0`) or behind a transport in another (the front-end processes of
docs/processes.md, whose remote implementation makes each method one message).

The engine side keeps the lifecycle: `RequestCore.execute` holds the version for the
whole call, so a version still quiesces before it unloads whichever process asked.
Classify, Regress and MultiInference carry their request message whole (with the model
the codec read from it): their inputs are serialized tf.Examples that only the model's
graph parses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import numpy as np
from google.protobuf.message import Message
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from pyserving.engine.request_core import (
    ModelRequest,
    PlanOptions,
    Prediction,
    RequestCore,
    plan_predict,
)
from pyserving.engine.request_plans import (
    plan_classify,
    plan_multi_inference,
    plan_regress,
)
from pyserving.engine.servable import Signature
from pyserving.engine.signature_checks import select_signature


class InferCall(NamedTuple):
    """One Predict (or Open Inference Protocol infer) as a codec decoded it."""

    model: ModelRequest
    signature: str  # as the request named it; "" for the default
    inputs: Mapping[str, np.ndarray]
    output_filter: Sequence[str]
    deadline: float | None  # absolute, on the time.monotonic() clock


class DataPlane(Protocol):
    """The engine as every codec sees it; each method raises ServingError on a refusal."""

    async def infer(self, call: InferCall) -> Prediction: ...

    async def signature(self, model: ModelRequest, name: str) -> Signature:
        """The signature a request names, on the version it names: what a codec needs to
        decode (REST's JSON takes the signature's dtypes) or check (the Open Inference
        Protocol's datatypes) before its one `infer` call."""
        ...

    async def signature_defs(self, model: ModelRequest) -> tuple[int, Message]:
        """The version a request names and its SignatureDefMap (GetModelMetadata)."""
        ...

    async def classify(
        self,
        model: ModelRequest,
        request: classification_pb2.ClassificationRequest,
        deadline: float | None,
    ) -> classification_pb2.ClassificationResponse: ...

    async def regress(
        self, model: ModelRequest, request: regression_pb2.RegressionRequest, deadline: float | None
    ) -> regression_pb2.RegressionResponse: ...

    async def multi_inference(
        self,
        model: ModelRequest,
        request: inference_pb2.MultiInferenceRequest,
        deadline: float | None,
    ) -> inference_pb2.MultiInferenceResponse: ...


class InProcessDataPlane:
    """The engine in this process: each call is one `RequestCore.execute` with its plan."""

    def __init__(self, core: RequestCore, options: PlanOptions) -> None:
        self.core = core
        self.options = options

    async def infer(self, call: InferCall) -> Prediction:
        signature, inputs, wanted = call.signature, call.inputs, call.output_filter
        return await self.core.execute(
            call.model,
            lambda servable: plan_predict(servable, signature, inputs, wanted),
            call.deadline,
        )

    async def signature(self, model: ModelRequest, name: str) -> Signature:
        with self.core.servable_map.acquire(model.name, model.version, model.label) as held:
            return select_signature(held.servable, name)

    async def signature_defs(self, model: ModelRequest) -> tuple[int, Message]:
        with self.core.servable_map.acquire(model.name, model.version, model.label) as held:
            return held.version, held.servable.signature_def_map()

    async def classify(
        self,
        model: ModelRequest,
        request: classification_pb2.ClassificationRequest,
        deadline: float | None,
    ) -> classification_pb2.ClassificationResponse:
        options = self.options
        return await self.core.execute(  # type: ignore[no-any-return]
            model,
            lambda servable: plan_classify(servable, request, options),
            deadline,
        )

    async def regress(
        self, model: ModelRequest, request: regression_pb2.RegressionRequest, deadline: float | None
    ) -> regression_pb2.RegressionResponse:
        options = self.options
        return await self.core.execute(  # type: ignore[no-any-return]
            model,
            lambda servable: plan_regress(servable, request, options),
            deadline,
        )

    async def multi_inference(
        self,
        model: ModelRequest,
        request: inference_pb2.MultiInferenceRequest,
        deadline: float | None,
    ) -> inference_pb2.MultiInferenceResponse:
        options = self.options
        return await self.core.execute(  # type: ignore[no-any-return]
            model,
            lambda servable: plan_multi_inference(servable, request, options),
            deadline,
        )
