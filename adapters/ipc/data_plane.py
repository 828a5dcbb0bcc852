"""The data plane across processes: a front-end's `RemoteDataPlane` and the engine's handler.

Each `DataPlane` method is one message (docs/processes.md): the call's fields as msgpack
params, its input tensors as raw frames; the answer's version and signature as params, its
outputs as frames. Classify, Regress and MultiInference cross as their serialized request
and response messages, GetModelMetadata's SignatureDefMap as its bytes. A codec holding a
`RemoteDataPlane` cannot tell it from the in-process one: both return the same values and
raise `ServingError` with the engine's code.

`data_plane_handler(plane)` is the engine's side: the `EngineEndpoint` handler that runs
each message on the in-process plane, so the engine alone resolves versions, counts
requests in flight and batches.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    regression_pb2,
)

from pyserving.adapters.ipc.engine_side import Answer, Call, Handler
from pyserving.adapters.ipc.frontend_side import EngineClient
from pyserving.engine.data_plane import DataPlane, InferCall
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import ModelRequest, Prediction
from pyserving.engine.servable import Signature, TensorSpec

# The request and response classes of the methods that cross as whole messages.
MESSAGES: dict[str, tuple[type[Message], type[Message]]] = {
    "classify": (
        classification_pb2.ClassificationRequest,
        classification_pb2.ClassificationResponse,
    ),
    "regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
    "multi_inference": (
        inference_pb2.MultiInferenceRequest,
        inference_pb2.MultiInferenceResponse,
    ),
}


def _model_params(model: ModelRequest) -> dict[str, Any]:
    return {"model": model.name, "version": model.version, "label": model.label}


def _model(params: Mapping[str, Any]) -> ModelRequest:
    return ModelRequest(params["model"], params["version"], params["label"])


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def _spec_params(spec: TensorSpec) -> list[Any]:
    shape = None if spec.shape is None else list(spec.shape)
    return [spec.alias, spec.dtype.str if spec.dtype.kind != "O" else "O", shape, spec.name]


def _spec(fields: list[Any]) -> TensorSpec:
    alias, dtype, shape, name = fields
    return TensorSpec(alias, np.dtype(dtype), None if shape is None else tuple(shape), name)


def signature_params(signature: Signature) -> dict[str, Any]:
    """A Signature as msgpack-able params (numpy dtypes by their `str`)."""
    return {
        "name": signature.name,
        "method_name": signature.method_name,
        "inputs": [_spec_params(s) for s in signature.inputs.values()],
        "outputs": [_spec_params(s) for s in signature.outputs.values()],
        "defaults": sorted(signature.defaults),
    }


def signature_from(params: Mapping[str, Any]) -> Signature:
    inputs = [_spec(f) for f in params["inputs"]]
    outputs = [_spec(f) for f in params["outputs"]]
    return Signature(
        params["name"],
        params["method_name"],
        {s.alias: s for s in inputs},
        {s.alias: s for s in outputs},
        frozenset(params["defaults"]),
    )


class RemoteDataPlane:
    """A front-end's data plane: every call is one message to the engine."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client

    async def infer(self, call: InferCall) -> Prediction:
        params = {
            **_model_params(call.model),
            "signature": call.signature,
            "output_filter": list(call.output_filter),
        }
        answer = await self._client.call("infer", params, call.inputs, _remaining(call.deadline))
        return Prediction(dict(answer.tensors), answer.params["version"], answer.params["name"])

    async def signature(self, model: ModelRequest, name: str) -> Signature:
        params = {**_model_params(model), "signature": name}
        answer = await self._client.call("signature", params)
        return signature_from(answer.params)

    async def signature_defs(self, model: ModelRequest) -> tuple[int, Message]:
        answer = await self._client.call("signature_defs", _model_params(model))
        defs = get_model_metadata_pb2.SignatureDefMap.FromString(answer.params["message"])
        return answer.params["version"], defs

    async def _message(
        self, method: str, model: ModelRequest, request: Message, deadline: float | None
    ) -> Any:
        params = {**_model_params(model), "message": request.SerializeToString()}
        answer = await self._client.call(method, params, None, _remaining(deadline))
        return MESSAGES[method][1].FromString(answer.params["message"])

    async def classify(
        self,
        model: ModelRequest,
        request: classification_pb2.ClassificationRequest,
        deadline: float | None,
    ) -> classification_pb2.ClassificationResponse:
        return await self._message("classify", model, request, deadline)  # type: ignore[no-any-return]

    async def regress(
        self, model: ModelRequest, request: regression_pb2.RegressionRequest, deadline: float | None
    ) -> regression_pb2.RegressionResponse:
        return await self._message("regress", model, request, deadline)  # type: ignore[no-any-return]

    async def multi_inference(
        self,
        model: ModelRequest,
        request: inference_pb2.MultiInferenceRequest,
        deadline: float | None,
    ) -> inference_pb2.MultiInferenceResponse:
        return await self._message("multi_inference", model, request, deadline)  # type: ignore[no-any-return]


def data_plane_handler(plane: DataPlane) -> Handler:
    """The engine's side: each message run on `plane` (the in-process one)."""

    async def infer(call: Call) -> Answer:
        p = call.params
        request = InferCall(
            _model(p), p["signature"], call.tensors, p["output_filter"], _deadline(call.timeout_s)
        )
        prediction = await plane.infer(request)
        return Answer(
            {"version": prediction.version, "name": prediction.signature}, prediction.outputs
        )

    async def signature(call: Call) -> Answer:
        found = await plane.signature(_model(call.params), call.params["signature"])
        return Answer(signature_params(found))

    async def signature_defs(call: Call) -> Answer:
        version, defs = await plane.signature_defs(_model(call.params))
        return Answer({"version": version, "message": defs.SerializeToString()})

    def message(method: str) -> Callable[[Call], Awaitable[Answer]]:
        request_class = MESSAGES[method][0]
        run = getattr(plane, method)

        async def handle(call: Call) -> Answer:
            try:
                request = request_class.FromString(call.params["message"])
            except Exception:  # protobuf's DecodeError: a front-end sent what it never makes
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"{method}: undecodable request"
                ) from None
            response = await run(_model(call.params), request, _deadline(call.timeout_s))
            return Answer({"message": response.SerializeToString()})

        return handle

    methods: dict[str, Callable[[Call], Awaitable[Answer]]] = {
        "infer": infer,
        "signature": signature,
        "signature_defs": signature_defs,
        **{name: message(name) for name in MESSAGES},
    }

    async def handle(call: Call) -> Answer:
        method = methods.get(call.method)
        if method is None:
            raise ServingError(Code.UNIMPLEMENTED, f"the engine has no method {call.method!r}")
        return await method(call)

    return handle
