"""The engine's views as the messages of the services that define them (TF Serving's
GetModelStatusResponse and ReloadConfigResponse, the Open Inference Protocol's
ModelMetadataResponse, pyserving.ModelRegistry's ListModelsResponse), and the
`Lifecycle` the in-process plane reads them from.

Those message classes are generated into adapters/protos and the OIP's datatype names are
the codec's (api/oip/codec.py), neither of which engine/ imports: the composition root hands
this encoder to the in-process plane with the live config and the repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2

from pyserving.adapters.protos import grpc_service_pb2
from pyserving.adapters.protos.model_registry_pb2 import ListModelsResponse
from pyserving.api.oip import codec as oip_codec
from pyserving.engine.data_plane import Lifecycle
from pyserving.engine.manager import Manager, VersionStatus
from pyserving.engine.model_views import ListedModel, ModelMetadata
from pyserving.statemachines.servable_version import State

if TYPE_CHECKING:
    from pyserving.adapters.live_config import LiveConfig
    from pyserving.engine.model_admin import Repository

# Triton's platform strings for pyserving's platforms (Triton's tensorflow backend names a
# SavedModel `tensorflow_savedmodel`; a python model is named by its backend, as Triton's).
TRITON_PLATFORMS = {"tensorflow": "tensorflow_savedmodel", "python": "python"}


ModelVersionStatus: TypeAlias = get_model_status_pb2.ModelVersionStatus

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


def fill_version_status(out: ModelVersionStatus, status: VersionStatus) -> None:
    out.version = status.version
    out.state = STATE_TO_PROTO[status.state]
    if status.error:
        out.status.error_code = UNKNOWN_ERROR_CODE
        out.status.error_message = status.error
    else:
        out.status.SetInParent()  # OK: present, with code 0, as TF Serving sends it


class ViewMessages:
    """The engine's `ViewEncoder`."""

    def status(
        self, statuses: Sequence[VersionStatus]
    ) -> get_model_status_pb2.GetModelStatusResponse:
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            fill_version_status(response.model_version_status.add(), status)
        return response

    def reloaded(self) -> model_management_pb2.ReloadConfigResponse:
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()  # OK: present, with code 0, as TF Serving sends it
        return response

    def metadata(self, metadata: ModelMetadata) -> grpc_service_pb2.ModelMetadataResponse:
        response = grpc_service_pb2.ModelMetadataResponse(
            name=metadata.name,
            versions=[str(v) for v in metadata.versions],
            platform=TRITON_PLATFORMS.get(metadata.platform, metadata.platform),
        )
        signature = metadata.signature
        for specs, out in (
            (signature.inputs, response.inputs),
            (signature.outputs, response.outputs),
        ):
            for alias, tensor in specs.items():
                out.add(
                    name=alias,
                    datatype=oip_codec.datatype_of(tensor.dtype),
                    shape=oip_codec.metadata_shape(tensor),
                )
        return response

    def listing(self, models: Sequence[ListedModel]) -> ListModelsResponse:
        response = ListModelsResponse()
        for model in models:
            info = response.models.add(name=model.name, configured=model.configured is not None)
            if model.configured is not None:
                info.base_path = model.configured.base_path
                info.platform = model.configured.platform
            for status in model.versions:
                info.versions.add(
                    version=status.version,
                    state=status.state,
                    error=status.error,
                    fingerprint=status.fingerprint,
                )
            for label in model.labels:
                info.labels.add(
                    label=label.label,
                    version=label.version,
                    configured_version=label.configured_version,
                    serving=label.serving,
                )
        return response


def engine_lifecycle(
    manager: Manager, live_config: LiveConfig, repository: Repository | None
) -> Lifecycle:
    """What the views read: the config in force and its reloads, the repository (None
    without --model_repository)."""

    def platform_of(model: str) -> str:
        try:
            return live_config.platform_of(model)
        except LookupError:  # being removed from the config, still serving its last requests
            return ""

    return Lifecycle(
        manager,
        lambda: live_config.current,
        platform_of,
        ViewMessages(),
        reload=live_config.reload_message,
        repository=repository,
    )
