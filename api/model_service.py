"""tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)

from pyserving.adapters.model_config import ConfigError, ServerConfig, from_proto
from pyserving.api.model_spec import ModelRequest, parse_model_spec
from pyserving.engine.errors import Code, ServingError, invalid_argument, not_found
from pyserving.engine.manager import Manager, VersionStatus
from pyserving.engine.servable_map import ServableMap
from pyserving.statemachines.servable_version import State

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus

# TF Serving has no "error" state: a failed version is END with its error in `status`.
STATE_TO_PROTO = {
    State.NEW: ModelVersionStatus.START,
    State.LOADING: ModelVersionStatus.LOADING,
    State.AVAILABLE: ModelVersionStatus.AVAILABLE,
    State.UNLOADING: ModelVersionStatus.UNLOADING,
    State.END: ModelVersionStatus.END,
    State.ERROR: ModelVersionStatus.END,
}
UNKNOWN_ERROR_CODE = 2  # tensorflow.error.Code.UNKNOWN

# Applies a config and waits until its models settle; returns the load errors.
Reload = Callable[[ServerConfig, str], Awaitable[list[str]]]


def fill_version_status(out: ModelVersionStatus, status: VersionStatus) -> None:
    out.version = status.version
    out.state = STATE_TO_PROTO[status.state]
    if status.error:
        out.status.error_code = UNKNOWN_ERROR_CODE
        out.status.error_message = status.error
    else:
        out.status.SetInParent()  # OK: present, with code 0, as TF Serving sends it


def model_status(
    manager: Manager, servable_map: ServableMap, spec: ModelRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus's answer; shared by gRPC and REST (`GET /v1/models/NAME`)."""
    statuses = manager.statuses(spec.name)
    if not statuses:
        raise not_found(f"Could not find any versions of model {spec.name}")
    version = spec.version
    if spec.label is not None:
        version = servable_map.resolve(spec.name, label=spec.label)
    if version is not None:
        statuses = [s for s in statuses if s.version == version]
        if not statuses:
            raise not_found(f"Could not find version {version} of model {spec.name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        fill_version_status(response.model_version_status.add(), status)
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(
        self, manager: Manager, servable_map: ServableMap, reload: Reload | None = None
    ) -> None:
        self._manager = manager
        self._map = servable_map
        self._reload = reload

    async def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = parse_model_spec(request.model_spec)
        return model_status(self._manager, self._map, spec)

    async def HandleReloadConfigRequest(
        self,
        request: model_management_pb2.ReloadConfigRequest,
        context: grpc.aio.ServicerContext,
    ) -> model_management_pb2.ReloadConfigResponse:
        if self._reload is None:
            raise ServingError(Code.UNIMPLEMENTED, "this server does not take config reloads")
        if request.config.WhichOneof("config") != "model_config_list":
            # As TF Serving: an empty request is refused rather than unloading everything.
            raise invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                "ModelConfigList is currently supported"
            )
        try:
            config = from_proto(request.config, origin="ReloadConfigRequest.config")
        except ConfigError as exc:
            raise invalid_argument(str(exc)) from None
        errors = await self._reload(config, "HandleReloadConfigRequest")
        if errors:
            # The config is in force (the other models serve); the failed versions say why.
            raise ServingError(Code.UNKNOWN, "; ".join(errors))
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()
        return response
