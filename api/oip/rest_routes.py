"""The Open Inference Protocol's REST API (`/v2`) on the HTTP port, beside TF Serving's `/v1`.

`GET /v2/health/live`, `/v2/health/ready`, `/v2` (server metadata), `/v2/models/M
[/versions/V]` (model metadata) and `.../ready`, `POST .../infer` with JSON tensors or the
binary-data extension (`Inference-Header-Content-Length`), as tritonclient's HTTP client
sends them. The same calls as gRPC's ModelInfer (`handlers.py`: request core, signature
checks), inside the same envelope as `/v1` (request id, metrics, drain, and
--rest_api_timeout_in_ms as the deadline that reaches the runner). Errors are
`{"error": "..."}` with the envelope's HTTP status for the error's code; readiness that
is false answers 400 with no body, as Triton does.

Routes are exact (no catch-all under `/v2`), so the repository extension adds its own
`/v2/repository/...` routes beside these.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from google.protobuf import json_format

import pyserving
from pyserving.adapters.request_log.logger import NO_REQUEST_LOG, RequestLog
from pyserving.api.envelope import json_body
from pyserving.api.envelope import request_records as records
from pyserving.api.envelope.answer_provenance import (
    FINGERPRINT_PARAMETER,
    answer_metadata,
    described_version,
)
from pyserving.api.envelope.http_body import (
    CORS_HEADERS,
    REQUEST_ID,
    RestOptions,
    error_response,
    read_body,
)
from pyserving.api.envelope.request_envelope import Envelope, http_status
from pyserving.api.envelope.tensor_budget import request_budget
from pyserving.api.oip import codec as oip_codec
from pyserving.api.oip import handlers
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import ServingError
from pyserving.engine.off_loop import off_loop_if_big
from pyserving.engine.request_core import ModelRequest
from pyserving.engine.request_scope import RequestScope

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
# The `api` label of the request metrics, one per route.
API_LABELS = {
    "live": "rest_v2_server_live",
    "ready": "rest_v2_server_ready",
    "server": "rest_v2_server_metadata",
    "model": "rest_v2_model_metadata",
    "model_ready": "rest_v2_model_ready",
    "infer": "rest_v2_infer",
}


class _Reply:
    """What a route answers: a status, a body and its content type, extra headers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        content_type: str = JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body, self.status, self.content_type = body, status, content_type
        self.headers = headers or {}


class OipRest:
    """The `/v2` routes; see the module docstring."""

    def __init__(
        self,
        plane: DataPlane,
        envelope: Envelope,
        options: RestOptions,
        extensions: tuple[str, ...] = ("binary_tensor_data",),
        slots: asyncio.Semaphore | None = None,
        request_log: RequestLog = NO_REQUEST_LOG,
    ) -> None:
        self._log = request_log.log  # sampled answers become PredictionLog records (PredictLog)
        self._plane = plane
        self._envelope = envelope
        self._options = options
        self._extensions = list(extensions)
        self._timeout_s = options.timeout_s if options.timeout_s > 0 else None
        # Requests processed at once (--rest_api_num_threads), shared with /v1 when given.
        self._slots = slots or asyncio.Semaphore(max(1, options.max_concurrent))
        self._cors = CORS_HEADERS if options.cors else {}

    def routes(self) -> list[web.RouteDef]:
        model = "/v2/models/{model}"
        version = model + "/versions/{version}"
        return [
            web.get("/v2", self._route("server", self._server_metadata)),
            web.get("/v2/health/live", self._route("live", self._live)),
            web.get("/v2/health/ready", self._route("ready", self._server_ready)),
            web.get(model, self._route("model", self._model_metadata)),
            web.get(version, self._route("model", self._model_metadata)),
            web.get(model + "/ready", self._route("model_ready", self._model_ready)),
            web.get(version + "/ready", self._route("model_ready", self._model_ready)),
            web.post(model + "/infer", self._route("infer", self._infer)),
            web.post(version + "/infer", self._route("infer", self._infer)),
            *([web.options("/v2/{tail:.*}", self._preflight)] if self._cors else []),
        ]

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=self._cors)  # CORS, as /v1 answers it

    def _route(
        self, kind: str, answer: Callable[[web.Request], Awaitable[_Reply]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        api = API_LABELS[kind]

        async def handle(request: web.Request) -> web.Response:
            model = request.match_info.get("model", "")
            scope = RequestScope(api, model, lambda: request.headers.get(REQUEST_ID))
            try:
                reply = await self._envelope.run(
                    scope,
                    answer,
                    request,
                    timeout_s=self._timeout_s,
                    timeout_flag="--rest_api_timeout_in_ms",
                    carrier=request.headers,  # a W3C traceparent continues the caller's trace
                )
            except ServingError as exc:
                response = error_response(
                    exc,
                    http_status(exc),
                    json_body.error_body(exc.message),
                    content_type=JSON,
                    headers=self._cors,
                )
                return response
            return web.Response(
                status=reply.status,
                body=reply.body,
                content_type=reply.content_type,
                headers={**self._cors, **reply.headers},
            )

        return handle

    # ------------------------------------------------------------------ health, metadata
    async def _live(self, request: web.Request) -> _Reply:
        return _Reply()

    async def _server_ready(self, request: web.Request) -> _Reply:
        return _Reply() if await handlers.server_ready(self._plane) else _Reply(status=400)

    async def _server_metadata(self, request: web.Request) -> _Reply:
        return _Reply(
            orjson.dumps(
                {
                    "name": handlers.SERVER_NAME,
                    "version": pyserving.__version__,
                    "extensions": self._extensions,
                }
            )
        )

    def _spec(self, request: web.Request, label: str | None = None) -> ModelRequest:
        info = request.match_info
        return handlers.model_request(info["model"], info.get("version", ""), label)

    async def _model_ready(self, request: web.Request) -> _Reply:
        ready = await self._plane.model_ready(self._spec(request))
        return _Reply() if ready else _Reply(status=400)

    async def _model_metadata(self, request: web.Request) -> _Reply:
        spec = self._spec(request)
        response = await self._plane.model_metadata(spec)
        doc = json_format.MessageToDict(response, preserving_proto_field_name=True)
        for tensor in (*doc.get("inputs", ()), *doc.get("outputs", ())):
            tensor["shape"] = [int(d) for d in tensor.get("shape", ())]  # int64 → JSON numbers
        described = await described_version(self._plane, spec.name, spec.version, response.versions)
        if described is None:
            return _Reply(orjson.dumps(doc))
        version, fingerprint = described
        doc["parameters"] = {FINGERPRINT_PARAMETER: fingerprint, "model_version": str(version)}
        return _Reply(orjson.dumps(doc), headers=dict(answer_metadata(version, fingerprint)))

    # ------------------------------------------------------------------ infer
    async def _infer(self, request: web.Request) -> _Reply:
        body = await read_body(request, self._options.max_body_bytes, self._options.body_timeout_s)
        deadline = None if self._timeout_s is None else time.monotonic() + self._timeout_s
        async with self._slots:
            infer = await off_loop_if_big(
                len(body),
                oip_codec.parse_infer_body,
                body,
                request.headers.get(HEADER_LENGTH),
                request_budget(self._options.plan_options),
            )
            parameters = infer.parameters
            spec = self._spec(
                request, handlers.label_parameter(parameters.get(handlers.LABEL_PARAMETER))
            )
            signature_name = handlers.signature_parameter(
                parameters.get(handlers.SIGNATURE_PARAMETER)
            )
            wanted = infer.wanted
            model = spec.name

            prediction = await handlers.infer_prediction(
                self._plane, spec, signature_name, infer.inputs, wanted, deadline
            )
            self._log(
                model,
                lambda: records.as_predict_log(
                    spec,
                    signature_name,
                    infer.inputs,
                    records.predict_response(model, prediction),
                    wanted,
                    prediction.fingerprint,
                ),
            )
            order = handlers.output_order(prediction, wanted)
            answer: Any = await off_loop_if_big(
                sum(a.nbytes for a in prediction.outputs.values()),
                oip_codec.encode_infer_body,
                model,
                prediction.version,
                infer.id,
                prediction.outputs,
                order,
                infer.binary_outputs(order),
                {FINGERPRINT_PARAMETER: prediction.fingerprint} if prediction.fingerprint else None,
            )
        reply, header_length = answer
        headers = dict(answer_metadata(prediction.version, prediction.fingerprint))
        if header_length is None:
            return _Reply(reply, headers=headers)
        headers[HEADER_LENGTH] = str(header_length)
        return _Reply(reply, content_type=BINARY, headers=headers)
