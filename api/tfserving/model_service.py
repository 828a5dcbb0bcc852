"""tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest, both
answered by the engine through the data plane (engine/model_views.py, model_admin.py)."""

from __future__ import annotations

from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)

from pyserving.api.tfserving.model_spec import parse_model_spec
from pyserving.engine.data_plane import DataPlane


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def GetModelStatus(
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return await self._plane.model_status(parse_model_spec(request.model_spec))

    async def HandleReloadConfigRequest(
        self,
        request: model_management_pb2.ReloadConfigRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> model_management_pb2.ReloadConfigResponse:
        return await self._plane.reload_config(request)
