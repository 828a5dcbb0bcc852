"""pyserving.ModelRegistry/ListModels: every model with its versions, states, errors and labels.

TF Serving has no call that lists what a server serves. This one is pyserving's own
gRPC service, defined in protos/model_registry.proto; its generated modules register it
in protobuf's default descriptor pool, where server reflection looks (so `grpcurl
describe pyserving.ModelRegistry` works).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from pyserving.adapters.model_config import ServerConfig
from pyserving.api.grpc_errors import grpc_method
from pyserving.engine.errors import not_found
from pyserving.engine.manager import Manager
from pyserving.engine.servable_map import ServableMap
from pyserving.protos import model_registry_pb2, model_registry_pb2_grpc
from pyserving.protos.model_registry_pb2 import ListModelsRequest, ListModelsResponse

SERVICE_NAME = model_registry_pb2.DESCRIPTOR.services_by_name["ModelRegistry"].full_name
__all__ = ["SERVICE_NAME", "ListModelsRequest", "ListModelsResponse", "ModelListingService"]


class ModelListingService(model_registry_pb2_grpc.ModelRegistryServicer):
    """Serves `pyserving.ModelRegistry/ListModels` (that name stays: clients call it)."""

    def __init__(
        self,
        manager: Manager,
        servable_map: ServableMap,
        config: Callable[[], ServerConfig],
        desired_labels: Callable[[str], dict[str, int]],
    ) -> None:
        self._manager = manager
        self._map = servable_map
        self._config = config
        self._desired_labels = desired_labels

    @grpc_method
    async def ListModels(self, request, context: grpc.aio.ServicerContext):
        config = self._config()
        names = list(config.names)
        for name in self._manager.models():
            statuses = self._manager.statuses(name) or []
            if name not in names and any(s.state not in ("end", "error") for s in statuses):
                names.append(name)  # removed from the config, still unloading
        if request.model_name:
            if request.model_name not in names:
                raise not_found(f"Could not find model {request.model_name}")
            names = [request.model_name]
        response = ListModelsResponse()
        serving = self._map.snapshot
        for name in names:
            info = response.models.add(name=name, configured=config.get(name) is not None)
            model = config.get(name)
            if model is not None:
                info.base_path, info.platform = model.base_path, model.platform
            for status in self._manager.statuses(name) or []:
                info.versions.add(version=status.version, state=status.state, error=status.error)
            entry = serving.get(name)
            desired = self._desired_labels(name)
            for label, version in sorted(self._map.labels(name).items()):
                info.labels.add(
                    label=label,
                    version=version,
                    configured_version=desired.get(label, version),
                    serving=entry is not None and version in entry.versions,
                )
        return response


def add_to_server(service: ModelListingService, server: grpc.aio.Server) -> None:
    model_registry_pb2_grpc.add_ModelRegistryServicer_to_server(service, server)
