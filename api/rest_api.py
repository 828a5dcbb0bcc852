"""TF Serving's REST API on the HTTP port: `/v1/models/...` status, metadata, predict,
classify and regress (TF Serving's http_rest_api_handler.cc and http_rest_api_util.cc).

Every request goes through the same serving map, signature checks, request plans and
runner (so the same batching) as gRPC, and is counted in the same request metrics with
the gRPC status name as its code. Errors are `{"error": "..."}` with TF Serving's
mapping of canonical codes to HTTP statuses (http_server.cc, ToHTTPStatusCode).

Paths are matched with TF Serving's regular expressions on the raw (still
percent-encoded) path; the model name and label are then decoded and only ever looked
up in the serving map, never joined into a file path.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
import structlog
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, regression_pb2

from pyserving.api import rest_codec
from pyserving.api.grpc_errors import RequestObserver
from pyserving.api.model_service import model_status
from pyserving.api.model_spec import ModelRequest
from pyserving.api.prediction_service import model_metadata
from pyserving.api.request_plans import PlanOptions, RequestPlan, plan_classify, plan_regress
from pyserving.engine.errors import Code, ServingError, invalid_argument
from pyserving.engine.inference import check_inputs, select_signature
from pyserving.engine.manager import Manager
from pyserving.engine.runner import Runner
from pyserving.engine.servable_map import ServableMap

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

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
CORS_HEADERS = {  # TF Serving's AddCORSHeaders
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
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
OFF_LOOP_BYTES = 256 * 1024  # bodies at least this big are decoded off the event loop


def http_status(code_name: str) -> int:
    return HTTP_STATUS.get(code_name, 500)


@dataclass(frozen=True)
class RestOptions:
    timeout_s: float  # --rest_api_timeout_in_ms; 0 or less: no deadline
    max_body_bytes: int  # --grpc_max_message_bytes, for REST bodies too
    max_concurrent: int  # --rest_api_num_threads: requests processed at once; more wait
    cors: bool  # --rest_api_enable_cors_support
    plan_options: PlanOptions


@dataclass(frozen=True)
class _Call:
    kind: str  # a key of API_LABELS
    spec: ModelRequest | None
    method: str = ""


class RestApi:
    def __init__(
        self,
        servable_map: ServableMap,
        manager: Manager,
        runner: Runner,
        options: RestOptions,
        observe: RequestObserver | None = None,
    ) -> None:
        self._map = servable_map
        self._manager = manager
        self._runner = runner
        self._options = options
        self._observe = observe
        self._slots = asyncio.Semaphore(max(1, options.max_concurrent))

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/v1/{tail:.*}", self.handle), web.route("*", "/v1", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.raw_path.split("?", 1)[0]
        call = _Call("malformed", None)
        code = "OK"
        headers = {"Content-Type": JSON, **(CORS_HEADERS if self._options.cors else {})}
        with structlog.contextvars.bound_contextvars(
            request_id=_request_id(request), api="rest", model=""
        ):
            try:
                if request.method == "OPTIONS" and self._options.cors:
                    return web.Response(status=204, headers=headers)  # CORS preflight
                call = parse_call(request.method, path)
                structlog.contextvars.bind_contextvars(
                    api=API_LABELS[call.kind], model=call.spec.name if call.spec else ""
                )
                body = await self._read_body(request)
                reply = await self._with_deadline(self._answer(call, body))
                return web.Response(body=reply, headers=headers)
            except ServingError as exc:
                code = exc.code.name
                response = web.Response(
                    status=getattr(exc, "http_status", None) or http_status(code),
                    body=rest_codec.error_body(exc.message),
                    headers=headers,
                )
                if isinstance(exc, BodyTooLarge):
                    response.force_close()  # the unread rest of the body is not drained
                return response
            except Exception:
                code = Code.INTERNAL.name
                log.exception("request_failed")
                return web.Response(
                    status=500,
                    body=rest_codec.error_body("internal error; the server log has the details"),
                    headers=headers,
                )
            finally:
                seconds = time.perf_counter() - started
                log.debug("request_finished", code=code, seconds=round(seconds, 6))
                if self._observe is not None:
                    try:
                        model = call.spec.name if call.spec else ""
                        self._observe(model, API_LABELS[call.kind], code, seconds)
                    except Exception:  # metrics must never fail a request
                        log.exception("request_observer_failed")

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, refused unread (Content-Length) or at the limit (chunked) when too big."""
        limit = self._options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(request.content_length, limit)
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _with_deadline(self, work: Awaitable[bytes]) -> bytes:
        """Run `work` under --rest_api_timeout_in_ms. On timeout the reply is 504 at once,
        but the work is left to finish: it holds its version until its model call ends,
        so a version is never unloaded under a running call."""
        task = asyncio.ensure_future(work)
        timeout = self._options.timeout_s if self._options.timeout_s > 0 else None
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        task.add_done_callback(_discard_result)
        raise ServingError(
            Code.DEADLINE_EXCEEDED,
            f"Deadline exceeded: no answer within {timeout * 1000:.0f} ms "
            "(--rest_api_timeout_in_ms)",
        )

    async def _answer(self, call: _Call, body: bytes) -> bytes:
        async with self._slots:
            spec = call.spec
            if call.kind == "status":
                return _proto_json(model_status(self._manager, self._map, spec))
            if call.kind == "metadata":
                return _metadata_json(model_metadata(self._map, spec, []))
            doc = await _off_loop_if_big(len(body), rest_codec.parse_body, body)
            if call.kind == "predict":
                return await self._predict(spec, doc, len(body))
            return await self._classify_or_regress(call.kind, spec, doc)

    async def _predict(self, spec: ModelRequest, doc: dict[str, Any], size: int) -> bytes:
        name = rest_codec.signature_name(doc)
        limit = self._options.plan_options.max_elements
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            signature = select_signature(handle.servable, name)
            inputs, columnar = await _off_loop_if_big(
                size, rest_codec.decode_predict, doc, signature, limit
            )
            check_inputs(signature, inputs)
            outputs = await self._runner.run(handle, signature.name, inputs, ())
        return await _off_loop_if_big(
            sum(a.nbytes for a in outputs.values()), rest_codec.encode_predict, outputs, columnar
        )

    async def _classify_or_regress(
        self, kind: str, spec: ModelRequest, doc: dict[str, Any]
    ) -> bytes:
        request: Message
        if kind == "classify":
            request = classification_pb2.ClassificationRequest()
            planner: Callable[..., RequestPlan] = plan_classify
        else:
            request = regression_pb2.RegressionRequest()
            planner = plan_regress
        request.model_spec.name = spec.name
        request.model_spec.signature_name = rest_codec.signature_name(doc)
        request.input.CopyFrom(rest_codec.examples_input(doc, kind))
        with self._map.acquire(spec.name, spec.version, spec.label) as handle:
            plan = planner(handle.servable, request, self._options.plan_options)
            results = [
                await self._runner.run(handle, c.signature, c.inputs, c.output_filter)
                for c in plan.calls
            ]
            response = plan.finish(results, handle.version)
        if kind == "classify":
            return rest_codec.encode_classification(response.result)
        return rest_codec.encode_regression(response.result)


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


class BodyTooLarge(ServingError):
    """RESOURCE_EXHAUSTED (so counted as gRPC's would be), answered 413 Payload Too Large."""

    http_status = 413


def _too_large(size: int, limit: int) -> ServingError:
    return BodyTooLarge(
        Code.RESOURCE_EXHAUSTED,
        f"request body of {size} bytes is larger than the limit of {limit} bytes "
        "(--grpc_max_message_bytes); send fewer instances per request",
    )


async def _off_loop_if_big(size: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run `function(*args)` on a thread when `size` bytes are big, so the loop stays free."""
    if size >= OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _discard_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


def _request_id(request: web.Request) -> str:
    value = re.sub(r"[^A-Za-z0-9._:-]", "", request.headers.get("x-request-id", ""))[:64]
    return value or uuid.uuid4().hex[:16]


def _json_options() -> dict[str, bool]:
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
