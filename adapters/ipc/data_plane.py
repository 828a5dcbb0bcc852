"""The data plane across processes: a front-end's `RemoteDataPlane` and the engine's handler.

Each `DataPlane` method is one message (docs/processes.md): the call's fields as msgpack
params, its input tensors as raw frames; the answer's version, signature and fingerprint as
params, its outputs as frames. Classify, Regress and MultiInference cross as their serialized
request and response messages, GetModelMetadata's SignatureDefMap as its bytes. A codec holding a
`RemoteDataPlane` cannot tell it from the in-process one: both return the same values and
raise `ServingError` with the engine's code. The views and admin calls are one message
each too: their proto requests and answers cross as serialized bytes (`VIEW_MESSAGES`),
plain values (readiness, health, the repository's rows and names) as msgpack params.

`data_plane_handler(plane)` is the engine's side: the `EngineEndpoint` handler that runs
each message on the in-process plane, so the engine alone resolves versions, counts
requests in flight and batches.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    regression_pb2,
)

from pyserving.adapters.ipc.engine_side import Answer, Call, Handler
from pyserving.adapters.protos import grpc_service_pb2
from pyserving.adapters.protos.model_registry_pb2 import ListModelsRequest, ListModelsResponse
from pyserving.engine.data_plane import DataPlane, InferCall
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.model_admin import IndexEntry
from pyserving.engine.request_core import ModelRequest, Prediction, Served
from pyserving.engine.request_scope import CURRENT, RequestScope
from pyserving.engine.servable import Signature, TensorSpec
from pyserving.engine.trace_hooks import Tracer

if TYPE_CHECKING:  # annotations only: the engine process never needs the front-end's ends
    from pyserving.adapters.ipc.frontend_services import ConfigFollowingClient
    from pyserving.adapters.ipc.frontend_side import EngineClient

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

# The answer classes of the views that cross as one message (their request is the model,
# or, for these two, a message of its own: `VIEW_REQUESTS`).
VIEW_MESSAGES: dict[str, type[Message]] = {
    "model_status": get_model_status_pb2.GetModelStatusResponse,
    "model_metadata": grpc_service_pb2.ModelMetadataResponse,
    "list_models": ListModelsResponse,
    "reload_config": model_management_pb2.ReloadConfigResponse,
}
VIEW_REQUESTS: dict[str, type[Message]] = {
    "list_models": ListModelsRequest,
    "reload_config": model_management_pb2.ReloadConfigRequest,
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


# Signatures a front-end remembers at most (a request naming many versions or labels).
SIGNATURE_CACHE_SIZE = 1024
# What a request decoded with a signature that changed meanwhile is refused with.
STALE_SIGNATURE_CODES = frozenset({Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION})


class RemoteDataPlane:
    """A front-end's data plane: every call is one message to the engine.

    The signature a REST or Open Inference Protocol request needs to decode is remembered
    while the engine's serving map stays the same (every answer says which map it was made
    under: a version added or gone, a label moved, starts a new one), so such a request
    crosses once, as a gRPC Predict does, rather than twice. A refused call forgets them
    too: a signature that changed meanwhile costs at most that one request.

    A model call carries its request's scope (api and id: the engine's log lines and TF
    Serving's runtime_latency need them); with `tracer`, a recorded request's span context
    goes with it and the engine's times come back (the engine makes the run and queue
    spans under the front-end's span)."""

    def __init__(
        self, client: EngineClient | ConfigFollowingClient, tracer: Tracer | None = None
    ) -> None:
        self._client = client
        self._tracer = tracer
        self._serving: Any = None  # the engine's serving map the last answer was made under
        self._signatures: dict[tuple[Any, ...], Signature] = {}

    async def _call(
        self,
        method: str,
        params: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        try:
            answer = await self._client.call(method, params, tensors, timeout_s)
        except ServingError as error:
            if error.code in STALE_SIGNATURE_CODES:
                self._signatures.clear()
            raise
        serving = answer.params.get("serving")
        if serving != self._serving:
            self._serving = serving
            self._signatures.clear()
        return answer

    async def _traced_call(
        self,
        method: str,
        params: dict[str, Any],
        tensors: Mapping[str, np.ndarray] | None,
        deadline: float | None,
    ) -> Answer:
        scope = CURRENT.get()
        if scope is not None:
            params["scope"] = [scope.api, scope.request_id]
        tracer = self._tracer
        trace = None if tracer is None else tracer.current()
        if tracer is not None and trace is not None:
            params["trace"] = tracer.carrier(trace)
        answer = await self._call(method, params, tensors, _remaining(deadline))
        if tracer is not None and trace is not None and "trace" in answer.params:
            tracer.answered(trace, answer.params["trace"])
        return answer

    async def infer(self, call: InferCall) -> Prediction:
        params = {
            **_model_params(call.model),
            "signature": call.signature,
            "output_filter": list(call.output_filter),
        }
        answer = await self._traced_call("infer", params, call.inputs, call.deadline)
        p = answer.params
        return Prediction(dict(answer.tensors), p["version"], p["name"], p.get("fingerprint", ""))

    async def signature(self, model: ModelRequest, name: str) -> Signature:
        key = (model.name, model.version, model.label, name)
        found = self._signatures.get(key)
        if found is not None:
            return found
        answer = await self._call("signature", {**_model_params(model), "signature": name})
        found = signature_from(answer.params)
        if self._serving is not None:  # an engine that says which map it read
            if len(self._signatures) >= SIGNATURE_CACHE_SIZE:
                self._signatures.clear()
            self._signatures[key] = found
        return found

    async def signature_defs(self, model: ModelRequest) -> tuple[int, Message]:
        answer = await self._call("signature_defs", _model_params(model))
        defs = get_model_metadata_pb2.SignatureDefMap.FromString(answer.params["message"])
        return answer.params["version"], defs

    async def _message(
        self, method: str, model: ModelRequest, request: Message, deadline: float | None
    ) -> Served[Any]:
        params = {**_model_params(model), "message": request.SerializeToString()}
        answer = await self._traced_call(method, params, None, deadline)
        reply = MESSAGES[method][1].FromString(answer.params["message"])
        return Served(reply, answer.params.get("fingerprint", ""))

    async def classify(
        self,
        model: ModelRequest,
        request: classification_pb2.ClassificationRequest,
        deadline: float | None,
    ) -> Served[classification_pb2.ClassificationResponse]:
        return await self._message("classify", model, request, deadline)

    async def regress(
        self, model: ModelRequest, request: regression_pb2.RegressionRequest, deadline: float | None
    ) -> Served[regression_pb2.RegressionResponse]:
        return await self._message("regress", model, request, deadline)

    async def multi_inference(
        self,
        model: ModelRequest,
        request: inference_pb2.MultiInferenceRequest,
        deadline: float | None,
    ) -> Served[inference_pb2.MultiInferenceResponse]:
        return await self._message("multi_inference", model, request, deadline)

    async def _view(self, method: str, params: Mapping[str, Any]) -> Any:
        answer = await self._call(method, params)
        return VIEW_MESSAGES[method].FromString(answer.params["message"])

    async def model_status(
        self, model: ModelRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return await self._view("model_status", _model_params(model))

    async def model_ready(self, model: ModelRequest) -> bool:
        answer = await self._call("model_ready", _model_params(model))
        return bool(answer.params["ready"])

    async def model_metadata(self, model: ModelRequest) -> grpc_service_pb2.ModelMetadataResponse:
        return await self._view("model_metadata", _model_params(model))

    async def list_models(self, request: ListModelsRequest) -> ListModelsResponse:
        params = {"message": request.SerializeToString()}
        return await self._view("list_models", params)

    async def health(self, service: str) -> int | None:
        answer = await self._call("health", {"service": service})
        return answer.params["status"]

    async def reload_config(
        self, request: model_management_pb2.ReloadConfigRequest
    ) -> model_management_pb2.ReloadConfigResponse:
        params = {"message": request.SerializeToString()}
        return await self._view("reload_config", params)

    async def repository_index(self, ready_only: bool) -> list[IndexEntry]:
        answer = await self._call("repository_index", {"ready_only": ready_only})
        return [IndexEntry(*row) for row in answer.params["entries"]]

    async def repository_load(self, name: str) -> None:
        await self._call("repository_load", {"name": name})

    async def repository_unload(self, name: str) -> None:
        await self._call("repository_unload", {"name": name})


def _decoded(request_class: type[Message], data: bytes, method: str) -> Any:
    try:
        return request_class.FromString(data)
    except Exception:  # protobuf's DecodeError: a front-end sent what it never makes
        raise ServingError(Code.INVALID_ARGUMENT, f"{method}: undecodable request") from None


def data_plane_handler(plane: DataPlane, tracer: Tracer | None = None) -> Handler:
    """The engine's side: each message run on `plane` (the in-process one). A model call
    runs in its request's scope, as in-process; with `tracer`, one a front-end traces is
    traced here under its span (`Tracer.adopt`)."""

    async def traced(call: Call, run: Callable[[], Awaitable[Answer]]) -> Answer:
        sent = call.params.get("scope")
        token = None
        if sent is not None:
            api, request_id = str(sent[0]), str(sent[1])
            token = CURRENT.set(RequestScope(api, call.params["model"], lambda: request_id))
        try:
            carrier = call.params.get("trace")
            if tracer is None or carrier is None:
                return await run()
            trace = tracer.adopt(carrier)
            try:
                answer = await run()
            finally:
                times = tracer.release(trace)
            return Answer({**answer.params, "trace": times}, answer.tensors)
        finally:
            if token is not None:
                CURRENT.reset(token)

    async def infer(call: Call) -> Answer:
        p = call.params
        request = InferCall(
            _model(p), p["signature"], call.tensors, p["output_filter"], _deadline(call.timeout_s)
        )

        async def run() -> Answer:
            prediction = await plane.infer(request)
            params = {
                "version": prediction.version,
                "name": prediction.signature,
                "fingerprint": prediction.fingerprint,
            }
            return Answer(params, prediction.outputs)

        return await traced(call, run)

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
            request = _decoded(request_class, call.params["message"], method)

            async def answer() -> Answer:
                served = await run(_model(call.params), request, _deadline(call.timeout_s))
                message = served.message.SerializeToString()
                return Answer({"message": message, "fingerprint": served.fingerprint})

            return await traced(call, answer)

        return handle

    def view(method: str) -> Callable[[Call], Awaitable[Answer]]:
        run = getattr(plane, method)
        request_class = VIEW_REQUESTS.get(method)

        async def handle(call: Call) -> Answer:
            if request_class is None:
                response = await run(_model(call.params))
            else:
                response = await run(_decoded(request_class, call.params["message"], method))
            return Answer({"message": response.SerializeToString()})

        return handle

    async def model_ready(call: Call) -> Answer:
        return Answer({"ready": await plane.model_ready(_model(call.params))})

    async def health(call: Call) -> Answer:
        return Answer({"status": await plane.health(call.params["service"])})

    async def repository_index(call: Call) -> Answer:
        entries = await plane.repository_index(bool(call.params["ready_only"]))
        rows = [[e.name, e.version, e.state, e.reason] for e in entries]
        return Answer({"entries": rows})

    async def repository_load(call: Call) -> Answer:
        await plane.repository_load(call.params["name"])
        return Answer()

    async def repository_unload(call: Call) -> Answer:
        await plane.repository_unload(call.params["name"])
        return Answer()

    methods: dict[str, Callable[[Call], Awaitable[Answer]]] = {
        "infer": infer,
        "signature": signature,
        "signature_defs": signature_defs,
        **{name: message(name) for name in MESSAGES},
        **{name: view(name) for name in VIEW_MESSAGES},
        "model_ready": model_ready,
        "health": health,
        "repository_index": repository_index,
        "repository_load": repository_load,
        "repository_unload": repository_unload,
    }

    async def handle(call: Call) -> Answer:
        method = methods.get(call.method)
        if method is None:
            raise ServingError(Code.UNIMPLEMENTED, f"the engine has no method {call.method!r}")
        return await method(call)

    return handle
