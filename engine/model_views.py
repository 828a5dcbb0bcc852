"""The lifecycle as the protocols' views read it: model status, readiness, metadata, listing.

These answers used to be built by the api/ servicers from the manager and the serving map;
they live here so that the engine answers them for every front-end (docs/processes.md)
and a codec holds only a `DataPlane`. Pure logic over engine types: what lives in
adapters/ and api/ (the config in force, the messages of TF Serving's, pyserving's and
Triton's services) comes in through the small protocols below, wired by the composition
root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from pyserving.engine.errors import not_found
from pyserving.engine.manager import Manager, VersionStatus
from pyserving.engine.request_core import ModelRequest
from pyserving.engine.servable import Servable, Signature
from pyserving.engine.servable_map import ServableMap
from pyserving.engine.signature_checks import DEFAULT_SIGNATURE, select_signature

if TYPE_CHECKING:  # messages, for annotations only: engine/ imports no adapters/ and no
    # TF Serving proto at run time (the encoder, api/view_messages.py, builds them)
    from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2

    from pyserving.adapters.protos import grpc_service_pb2
    from pyserving.adapters.protos.model_registry_pb2 import ListModelsResponse


class ConfiguredModel(Protocol):
    """A model of the config in force, as the views read it (adapters' ModelConfig)."""

    @property
    def base_path(self) -> str: ...

    @property
    def platform(self) -> str: ...


class ModelsConfig(Protocol):
    """The config in force (adapters' ServerConfig): its model names, in order, and each."""

    @property
    def names(self) -> list[str]: ...

    def get(self, name: str) -> ConfiguredModel | None: ...


class ModelMetadata(NamedTuple):
    """The Open Inference Protocol's ModelMetadata before encoding."""

    name: str
    versions: list[int]  # serving now, ascending
    platform: str  # pyserving's name ("tensorflow", "python"), "" when no longer configured
    signature: Signature


class ListedLabel(NamedTuple):
    label: str
    version: int
    configured_version: int  # where the config wants it (it may not point there yet)
    serving: bool


class ListedModel(NamedTuple):
    """One model of ListModels before encoding."""

    name: str
    configured: ConfiguredModel | None  # None: removed from the config, still unloading
    versions: list[VersionStatus]
    labels: list[ListedLabel]


class ViewEncoder(Protocol):
    """Encodes the views whose messages are defined outside engine/ (api/view_messages.py)."""

    def metadata(self, metadata: ModelMetadata) -> grpc_service_pb2.ModelMetadataResponse: ...

    def listing(self, models: Sequence[ListedModel]) -> ListModelsResponse: ...

    def status(
        self, statuses: Sequence[VersionStatus]
    ) -> get_model_status_pb2.GetModelStatusResponse: ...

    def reloaded(self) -> model_management_pb2.ReloadConfigResponse:
        """A successful config reload's answer."""
        ...


def model_status(
    manager: Manager, servable_map: ServableMap, spec: ModelRequest
) -> list[VersionStatus]:
    """GetModelStatus's answer before encoding (gRPC, and REST's `GET /v1/models/NAME`):
    the statuses of the version `spec` names, or of every version of the model."""
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
    return statuses


def is_model_ready(servable_map: ServableMap, spec: ModelRequest) -> bool:
    """Whether the version `spec` names serves now (an unknown model is not ready)."""
    entry = servable_map.snapshot.get(spec.name)
    if entry is None:
        return False
    if spec.version is not None:
        return spec.version in entry.versions
    if spec.label is not None:
        return entry.labels.get(spec.label) in entry.versions
    return True


def metadata_signature(servable: Servable) -> Signature:
    """The signature ModelMetadata describes: `serving_default`, or the only one there is."""
    signatures = servable.signatures
    if DEFAULT_SIGNATURE in signatures or len(signatures) != 1:
        return select_signature(servable, DEFAULT_SIGNATURE)
    return next(iter(signatures.values()))


def model_metadata(
    servable_map: ServableMap, spec: ModelRequest, platform_of: Callable[[str], str]
) -> ModelMetadata:
    """ModelMetadata: the versions serving, the platform, the signature's tensors."""
    with servable_map.acquire(spec.name, spec.version, spec.label) as handle:
        signature = metadata_signature(handle.servable)
    entry = servable_map.snapshot.get(spec.name)
    versions = sorted(entry.versions) if entry is not None else [handle.version]
    return ModelMetadata(spec.name, versions, platform_of(spec.name), signature)


def list_models(
    manager: Manager, servable_map: ServableMap, config: ModelsConfig, model_name: str
) -> list[ListedModel]:
    """ListModels: the configured models, and those removed that still unload; or the one
    `model_name` names (NOT_FOUND when it is neither)."""
    names = list(config.names)
    for name in manager.models():
        statuses = manager.statuses(name) or []
        if name not in names and any(s.state not in ("end", "error") for s in statuses):
            names.append(name)  # removed from the config, still unloading
    if model_name:
        if model_name not in names:
            raise not_found(f"Could not find model {model_name}")
        names = [model_name]
    serving = servable_map.snapshot
    listed = []
    for name in names:
        entry = serving.get(name)
        desired = manager.serving.desired(name)
        labels = [
            ListedLabel(
                label,
                version,
                desired.get(label, version),
                entry is not None and version in entry.versions,
            )
            for label, version in sorted(servable_map.labels(name).items())
        ]
        listed.append(ListedModel(name, config.get(name), manager.statuses(name) or [], labels))
    return listed
