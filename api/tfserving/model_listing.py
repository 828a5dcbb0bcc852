"""pyserving.ModelRegistry/ListModels: every model with its versions, states, errors and labels.

TF Serving has no call that lists what a server serves. This one is pyserving's own
gRPC service, defined in protos/model_registry.proto; its generated modules register it
in protobuf's default descriptor pool, where server reflection looks (so `grpcurl
describe pyserving.ModelRegistry` works).
"""

from __future__ import annotations

from typing import Any

import grpc

from pyserving.adapters.protos import model_registry_pb2, model_registry_pb2_grpc
from pyserving.adapters.protos.model_registry_pb2 import ListModelsRequest, ListModelsResponse
from pyserving.api.envelope.request_envelope import Envelope, add_service
from pyserving.engine.data_plane import DataPlane

SERVICE_NAME = model_registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"].full_name
__all__ = ["SERVICE_NAME", "ListModelsRequest", "ListModelsResponse", "ModelListingService"]


class ModelListingService(model_registry_pb2_grpc.ModelRegistryServicer):
    """Serves `pyserving.ModelRegistry/ListModels` (that name stays: clients call it); the
    engine builds the answer (engine/model_views.list_models)."""

    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def ListModels(
        self, request: ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ListModelsResponse:
        return await self._plane.list_models(request)


def add_to_server(
    service: ModelListingService, server: grpc.aio.Server, envelope: Envelope
) -> None:
    add_service(
        server, envelope, model_registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"], service
    )
