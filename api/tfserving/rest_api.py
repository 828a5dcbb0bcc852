"""TF Serving's REST API on the HTTP port: `/v1/models/...` status, metadata, predict,
classify and regress (TF Serving's http_rest_api_handler.cc and http_rest_api_util.cc).

A codec around the same request core as gRPC (so the same signature checks, plans and
batching) inside the same request envelope (request id, metrics with the gRPC status
name as the code, drain, and --rest_api_timeout_in_ms as the deadline that reaches the
runner: a timed-out request is dropped from its batch). Errors are `{"error": "..."}`
with TF Serving's mapping of canonical codes to HTTP statuses.

Paths are matched with TF Serving's regular expressions on the raw (still
percent-encoded) path; the model name and label are then decoded and only ever looked
up in the serving map, never joined into a file path.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, regression_pb2

from pyserving.adapters.request_log.logger import NO_REQUEST_LOG, RequestLog
from pyserving.api.envelope import json_body
from pyserving.api.envelope import request_records as records
from pyserving.api.envelope.answer_provenance import answer_metadata
from pyserving.api.envelope.http_body import (
    CORS_HEADERS,
    REQUEST_ID,
    RestOptions,
    error_response,
    read_body,
)
from pyserving.api.envelope.request_envelope import HTTP_STATUS, Envelope, http_status
from pyserving.api.envelope.tensor_budget import request_budget
from pyserving.api.tfserving import rest_codec
from pyserving.api.tfserving.handlers import encode_prediction, model_metadata
from pyserving.engine.data_plane import DataPlane, InferCall
from pyserving.engine.errors import ServingError, invalid_argument
from pyserving.engine.off_loop import off_loop_if_big
from pyserving.engine.request_core import ModelRequest
from pyserving.engine.request_scope import RequestScope

__all__ = ["HTTP_STATUS", "RestApi", "RestOptions", "parse_call"]

log = structlog.get_logger("pyserving.rest")

# TF Serving's kPredictionApiGegex and kModelStatusApiRegex, matched on the whole path.
PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_VERSION_AND_LABEL = re.compile(
    r"/v1/models/[^/:]+/(?:versions/[^/:]+/labels|labels/[^/:]+/versions)/", re.IGNORECASE
)

JSON = "application/json"
# The `api` label of the request metrics: a fixed set, whatever the client sends.
API_LABELS = {
    "predict": "rest_predict",
    "classify": "rest_classify",
    "regress": "rest_regress",
    "status": "rest_model_status",
    "metadata": "rest_model_metadata",
    "malformed": "rest_malformed",
}
NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True)
class _Call:
    kind: str  # a key of API_LABELS
    spec: ModelRequest
    method: str = ""


class RestApi:
    """The REST codec: a path and JSON body in, the data plane's answer out as JSON."""

    def __init__(
        self,
        plane: DataPlane,
        envelope: Envelope,
        options: RestOptions,
        request_log: RequestLog = NO_REQUEST_LOG,
    ) -> None:
        self._plane = plane
        self._log = request_log.log  # sampled answers become PredictionLog records
        self._envelope = envelope
        self._options = options
        self._timeout_s = options.timeout_s if options.timeout_s > 0 else None
        # --rest_api_num_threads: shared with the /v2 routes (`slots`), one bound for both.
        self.slots = asyncio.Semaphore(max(1, options.max_concurrent))
        self._headers = {"Content-Type": JSON, **(CORS_HEADERS if options.cors else {})}

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/v1/{tail:.*}", self.handle), web.route("*", "/v1", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = self._headers
        if request.method == "OPTIONS" and self._options.cors:
            return web.Response(status=204, headers=headers)  # CORS preflight
        scope = RequestScope(API_LABELS["malformed"], "", lambda: request.headers.get(REQUEST_ID))
        try:
            reply = await self._envelope.run(
                scope,
                self._answer,
                scope,
                request,
                timeout_s=self._timeout_s,
                timeout_flag="--rest_api_timeout_in_ms",
                carrier=request.headers,
            )
            body, extra = reply
            return web.Response(body=body, headers={**headers, **extra} if extra else headers)
        except ServingError as exc:
            return error_response(
                exc, http_status(exc), json_body.error_body(exc.message), headers=headers
            )

    async def _answer(
        self, scope: RequestScope, request: web.Request
    ) -> tuple[bytes, Mapping[str, str]]:
        """The reply's body, and the headers an answer adds (Predict's provenance)."""
        call = parse_call(request.method, request.raw_path.split("?", 1)[0])
        scope.api = API_LABELS[call.kind]
        scope.model = call.spec.name
        body = await read_body(request, self._options.max_body_bytes, self._options.body_timeout_s)
        deadline = None if self._timeout_s is None else time.monotonic() + self._timeout_s
        async with self.slots:
            spec = call.spec
            if call.kind == "status":
                return _proto_json(await self._plane.model_status(spec)), NO_HEADERS
            if call.kind == "metadata":
                return _metadata_json(await model_metadata(self._plane, spec, [])), NO_HEADERS
            doc = await off_loop_if_big(len(body), json_body.parse_body, body)
            if call.kind == "predict":
                return await self._predict(spec, doc, len(body), deadline)
            return await self._classify_or_regress(call.kind, spec, doc, deadline)

    async def _predict(
        self, spec: ModelRequest, doc: dict[str, Any], size: int, deadline: float | None
    ) -> tuple[bytes, Mapping[str, str]]:
        name = rest_codec.signature_name(doc)
        budget = request_budget(self._options.plan_options)
        signature = await self._plane.signature(spec, name)  # JSON takes its dtypes
        inputs, columnar = await off_loop_if_big(
            size, rest_codec.decode_predict, doc, signature, budget
        )
        call = InferCall(spec, signature.name, inputs, (), deadline)
        prediction = await self._plane.infer(call)
        self._log(
            spec.name,
            lambda: records.as_predict_log(
                spec,
                name,
                inputs,
                encode_prediction(spec.name, prediction),
                fingerprint=prediction.fingerprint,
            ),
        )
        outputs = prediction.outputs
        body = await off_loop_if_big(
            sum(a.nbytes for a in outputs.values()), rest_codec.encode_predict, outputs, columnar
        )
        return body, dict(answer_metadata(prediction.version, prediction.fingerprint))

    async def _classify_or_regress(
        self, kind: str, spec: ModelRequest, doc: dict[str, Any], deadline: float | None
    ) -> tuple[bytes, Mapping[str, str]]:
        request: Any
        response: Any
        if kind == "classify":
            request = classification_pb2.ClassificationRequest()
        else:
            request = regression_pb2.RegressionRequest()
        request.model_spec.name = spec.name
        request.model_spec.signature_name = rest_codec.signature_name(doc)
        request.input.CopyFrom(rest_codec.examples_input(doc, kind))
        if kind == "classify":
            response, fingerprint = await self._plane.classify(spec, request, deadline)
        else:
            response, fingerprint = await self._plane.regress(spec, request, deadline)
        field = records.CLASSIFY if kind == "classify" else records.REGRESS
        self._log(
            spec.name,
            lambda: records.with_path_version(field, request, response, spec, fingerprint),
        )
        headers = dict(answer_metadata(response.model_spec.version.value, fingerprint))
        if kind == "classify":
            return rest_codec.encode_classification(response.result), headers
        return rest_codec.encode_regression(response.result), headers


def parse_call(method: str, path: str) -> _Call:
    """Which API a method and raw path ask for; 400 naming the path when none."""
    if _VERSION_AND_LABEL.match(path):
        raise invalid_argument(
            f"Malformed request: {method} {path}: give either /versions/N or /labels/LABEL, "
            "not both"
        )
    match = None
    if method == "POST":
        match = PREDICTION_PATH.fullmatch(path)
        if match:
            name, version, label, api = match.groups()
            return _Call(api.lower(), _model_request(name, version, label), api.lower())
    elif method == "GET":
        match = STATUS_PATH.fullmatch(path)
        if match:
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            kind = "metadata" if metadata else "status"
            return _Call(kind, _model_request(name, version, label))
    raise invalid_argument(
        f"Malformed request: {method} {path}: use GET /v1/models/NAME[/versions/N|/labels/L]"
        "[/metadata] or POST /v1/models/NAME[/versions/N|/labels/L]:predict|classify|regress"
    )


def _model_request(name: str, version: str | None, label: str | None) -> ModelRequest:
    number = None
    if version:
        number = int(version)
        if number >= 1 << 63:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
    return ModelRequest(
        name=_decoded(name, "model name"),
        version=number,
        label=_decoded(label, "model version label") if label else None,
    )


def _decoded(segment: str, what: str) -> str:
    """A percent-decoded path segment; TF Serving's DecodeArg, strict about UTF-8."""
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise invalid_argument(f"Failed to decode {what}: {segment}") from None


def _json_options() -> dict[str, Any]:
    """TF Serving prints fields with default values; the keyword changed in protobuf 5.26."""
    parameters = inspect.signature(json_format.MessageToDict).parameters
    if "always_print_fields_with_no_presence" in parameters:
        return {"always_print_fields_with_no_presence": True}
    return {"including_default_value_fields": True}


PRINT_DEFAULTS = _json_options()


def _proto_json(message: Message) -> bytes:
    return json_format.MessageToJson(message, indent=1, **PRINT_DEFAULTS).encode()


def _metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> bytes:
    """TF Serving's layout: model_spec, and metadata.signature_def as the SignatureDefMap."""
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_defs)
    options = {"preserving_proto_field_name": True, **PRINT_DEFAULTS}
    return orjson.dumps(
        {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signature_defs, **options)},
        }
    )
