"""pyserving.ModelRegistry/ListModels: every model with its versions, states, errors and labels.

TF Serving has no call that lists what a server serves. This one is pyserving's own
gRPC service. No protoc runs at build time, so its messages are described here as a
FileDescriptorProto, added to protobuf's default descriptor pool (where server
reflection looks, so `grpcurl describe pyserving.ModelRegistry` works) and turned into
message classes at import.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from pyserving.adapters.model_config import ServerConfig
from pyserving.api.request_envelope import Envelope, method_handler
from pyserving.engine.errors import not_found
from pyserving.engine.manager import Manager
from pyserving.engine.servable_map import ServableMap

PACKAGE = "pyserving"
SERVICE_NAME = f"{PACKAGE}.ModelRegistry"
PROTO_FILE = "pyserving/model_registry.proto"

_F = descriptor_pb2.FieldDescriptorProto


def _message(name: str, *fields: tuple[str, int, int, str]) -> descriptor_pb2.DescriptorProto:
    """fields: (name, number, type, message type name or "") each; repeated if name ends '[]'."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, type_name in fields:
        repeated = field_name.endswith("[]")
        message.field.add(
            name=field_name.removesuffix("[]"),
            number=number,
            type=kind,
            type_name=f".{PACKAGE}.{type_name}" if type_name else None,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
        )
    return message


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=PROTO_FILE, package=PACKAGE, syntax="proto3")
    proto.message_type.extend(
        [
            # model_name empty: every model; else just that one (NOT_FOUND if unknown).
            _message("ListModelsRequest", ("model_name", 1, _F.TYPE_STRING, "")),
            _message("ListModelsResponse", ("models[]", 1, _F.TYPE_MESSAGE, "ModelInfo")),
            _message(
                "ModelInfo",
                ("name", 1, _F.TYPE_STRING, ""),
                ("base_path", 2, _F.TYPE_STRING, ""),
                ("platform", 3, _F.TYPE_STRING, ""),
                # False while a model removed from the config unloads its versions.
                ("configured", 4, _F.TYPE_BOOL, ""),
                ("versions[]", 5, _F.TYPE_MESSAGE, "VersionInfo"),
                ("labels[]", 6, _F.TYPE_MESSAGE, "LabelInfo"),
            ),
            _message(
                "VersionInfo",
                ("version", 1, _F.TYPE_INT64, ""),
                # new, loading, available, unloading, end or error (the machine's state).
                ("state", 2, _F.TYPE_STRING, ""),
                ("error", 3, _F.TYPE_STRING, ""),
            ),
            _message(
                "LabelInfo",
                ("label", 1, _F.TYPE_STRING, ""),
                ("version", 2, _F.TYPE_INT64, ""),  # what a request naming it gets
                ("configured_version", 3, _F.TYPE_INT64, ""),  # where the config points it
                ("serving", 4, _F.TYPE_BOOL, ""),  # `version` is available now
            ),
        ]
    )
    service = proto.service.add(name="ModelRegistry")
    service.method.add(
        name="ListModels",
        input_type=f".{PACKAGE}.ListModelsRequest",
        output_type=f".{PACKAGE}.ListModelsResponse",
    )
    return proto


def _register() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(PROTO_FILE)
    except KeyError:
        pool.Add(file_descriptor_proto())
    return pool


_POOL = _register()
ListModelsRequest = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{PACKAGE}.ListModelsRequest")
)
ListModelsResponse = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{PACKAGE}.ListModelsResponse")
)


class ModelListingService:
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


def add_to_server(
    service: ModelListingService, server: grpc.aio.Server, envelope: Envelope
) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "ListModels": method_handler(
                envelope,
                f"/{SERVICE_NAME}/ListModels",
                service.ListModels,
                ListModelsRequest.FromString,
                ListModelsResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
