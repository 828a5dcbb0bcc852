"""The Open Inference Protocol's model repository extension (Triton's
docs/protocol/extension_model_repository.md) on both protocols: the gRPC methods
RepositoryIndex, RepositoryModelLoad and RepositoryModelUnload of
inference.GRPCInferenceService, and REST POST /v2/repository/index and
/v2/repository/models/{m}/load|unload. Codecs only: the operations are the data plane's
(the engine's adapters/model_repository.RepositoryControl), inside the one request envelope.

Served only with --model_repository (without it the methods answer UNIMPLEMENTED and the
paths 404: the feature is not there, where Triton without explicit model control
answers UNAVAILABLE, which clients take for a transient failure).

Parameters: a load's "config" (a ModelConfig override) and file contents are refused
with INVALID_ARGUMENT (models here are configured by their folders); an unload's
"unload_dependents" is accepted (there are no ensembles, so no dependents). The
request's repository_name is not consulted: there is one repository.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
import orjson
from aiohttp import web

from pyserving.adapters.protos import grpc_service_pb2
from pyserving.api.envelope.http_body import (
    DEFAULT_BODY_TIMEOUT_S,
    REQUEST_ID,
    error_response,
    read_body,
)
from pyserving.api.envelope.request_envelope import Envelope, http_status
from pyserving.api.envelope.restricted_api import MODEL_REPOSITORY, Restrictions
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import ServingError, invalid_argument
from pyserving.engine.model_admin import IndexEntry
from pyserving.engine.request_scope import RequestScope

METHODS = ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
JSON_HEADERS = {"Content-Type": "application/json"}
# The `api` label of the request metrics for the REST routes.
REST_APIS = {"index": "rest_repository_index", "load": "rest_repository_load"}
REST_APIS["unload"] = "rest_repository_unload"
ACCEPTED_UNLOAD_PARAMETERS = ("unload_dependents",)


def _refuse_load_parameters(names: list[str]) -> None:
    if names:
        raise invalid_argument(
            f"load parameters {', '.join(sorted(names))} are not supported: a model is "
            "loaded as its folder in --model_repository holds it; send no parameters"
        )


def _refuse_unload_parameters(names: list[str]) -> None:
    unknown = sorted(n for n in names if n not in ACCEPTED_UNLOAD_PARAMETERS)
    if unknown:
        raise invalid_argument(
            f"unload parameters {', '.join(unknown)} are not supported; "
            f"only {', '.join(ACCEPTED_UNLOAD_PARAMETERS)} is"
        )


class RepositoryService:
    """The three gRPC methods (add_service serves them by name, behind the envelope)."""

    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def RepositoryIndex(
        self,
        request: grpc_service_pb2.RepositoryIndexRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.RepositoryIndexResponse:
        response = grpc_service_pb2.RepositoryIndexResponse()
        for entry in await self._plane.repository_index(request.ready):
            response.models.add(
                name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
            )
        return response

    async def RepositoryModelLoad(
        self,
        request: grpc_service_pb2.RepositoryModelLoadRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.RepositoryModelLoadResponse:
        _refuse_load_parameters(list(request.parameters))
        await self._plane.repository_load(request.model_name)
        return grpc_service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self,
        request: grpc_service_pb2.RepositoryModelUnloadRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> grpc_service_pb2.RepositoryModelUnloadResponse:
        _refuse_unload_parameters(list(request.parameters))
        await self._plane.repository_unload(request.model_name)
        return grpc_service_pb2.RepositoryModelUnloadResponse()


def index_json(entries: list[IndexEntry]) -> bytes:
    """Triton's $repository_index_response: a never-loaded model is {"name"} alone."""
    rows: list[dict[str, str]] = []
    for e in entries:
        if not e.version and not e.state:
            rows.append({"name": e.name})
        else:
            rows.append(
                {"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
            )
    return orjson.dumps(rows)


def _json_object(body: bytes) -> dict[str, Any]:
    """An optional JSON object body (tritonclient sends "" for the index)."""
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise invalid_argument("the request body must be a JSON object")
    return doc


def _parameter_names(doc: Mapping[str, Any]) -> list[str]:
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise invalid_argument('"parameters" must be a JSON object')
    return list(parameters)


class RepositoryRoutes:
    """POST /v2/repository/index and /v2/repository/models/{model}/load|unload."""

    def __init__(
        self,
        plane: DataPlane,
        envelope: Envelope,
        restrictions: Restrictions,
        timeout_s: float | None,
        max_body_bytes: int,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    ) -> None:
        self._plane = plane
        self._envelope = envelope
        self._restrictions = restrictions
        self._timeout_s = timeout_s
        self._max_body_bytes = max_body_bytes
        self._body_timeout_s = body_timeout_s

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v2/repository/index", self.index),
            web.post("/v2/repository/models/{model}/load", self.load),
            web.post("/v2/repository/models/{model}/unload", self.unload),
        ]

    async def index(self, request: web.Request) -> web.Response:
        async def work(doc: dict[str, Any]) -> bytes:
            ready = doc.get("ready", False)
            if not isinstance(ready, bool):
                raise invalid_argument('"ready" must be true or false')
            return index_json(await self._plane.repository_index(ready))

        return await self._serve(request, "index", "", work)

    async def load(self, request: web.Request) -> web.Response:
        return await self._change(request, "load")

    async def unload(self, request: web.Request) -> web.Response:
        return await self._change(request, "unload")

    async def _change(self, request: web.Request, kind: str) -> web.Response:
        model = request.match_info["model"]
        if kind == "load":
            refuse, operation = _refuse_load_parameters, self._plane.repository_load
        else:
            refuse, operation = _refuse_unload_parameters, self._plane.repository_unload

        async def work(doc: dict[str, Any]) -> bytes:
            refuse(_parameter_names(doc))
            await operation(model)
            return b""

        return await self._serve(request, kind, model, work)

    async def _serve(
        self,
        request: web.Request,
        kind: str,
        model: str,
        work: Callable[[dict[str, Any]], Any],
    ) -> web.Response:
        api = REST_APIS[kind]
        scope = RequestScope(api, model, lambda: request.headers.get(REQUEST_ID))

        async def checked() -> bytes:
            self._restrictions.check_http(MODEL_REPOSITORY, api, request.headers, request.remote)
            body = await read_body(request, self._max_body_bytes, self._body_timeout_s)
            return await work(_json_object(body))

        try:
            body = await self._envelope.run(
                scope, checked, timeout_s=self._timeout_s, timeout_flag="--rest_api_timeout_in_ms"
            )
        except ServingError as exc:
            return error_response(
                exc, http_status(exc), orjson.dumps({"error": exc.message}), headers=JSON_HEADERS
            )
        return web.Response(body=body, headers=JSON_HEADERS if body else None)
