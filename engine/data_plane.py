"""The data plane: what a protocol asks of the engine to answer an inference request.

A codec decodes its request, makes one call on a `DataPlane` and encodes the answer. The
call carries everything the engine needs (the model and its version or label, the
signature, the inputs as arrays, the output filter, the deadline) and returns everything
the reply needs (the outputs, the version that answered, the signature used, the
fingerprint of that version's model bytes), so a codec
cannot tell whether the engine is in its own process (`InProcessDataPlane`, the single
process of `--workers=0`) or behind a transport in another (the front-end processes of
docs/processes.md, whose remote implementation makes each method one message).

The engine side keeps the lifecycle: `RequestCore.execute` holds the version for the
whole call, so a version still quiesces before it unloads whichever process asked.
Classify, Regress and MultiInference carry their request message whole (with the model
the codec read from it): their inputs are serialized tf.Examples that only the model's
graph parses.

The views (model status, readiness, metadata, ListModels, health) and the admin calls
(config reload, the model repository) are on the same interface, so a front-end process
with no manager answers them too: the in-process plane reads the lifecycle through its
`Lifecycle` (engine/model_views.py, model_admin.py, server_health.py hold the logic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
from google.protobuf.message import Message

from pyserving.engine import model_views
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.manager import Manager
from pyserving.engine.model_admin import (
    IndexEntry,
    Reload,
    Repository,
    no_repository,
    reload_config,
)
from pyserving.engine.model_views import ModelsConfig, ViewEncoder
from pyserving.engine.request_core import (
    ModelRequest,
    PlanOptions,
    Prediction,
    RequestCore,
    RequestPlan,
    Served,
    plan_predict,
    with_fingerprint,
)
from pyserving.engine.servable import Servable, Signature
from pyserving.engine.server_health import ServerHealth
from pyserving.engine.signature_checks import select_signature

if TYPE_CHECKING:  # messages, for annotations only: engine/ imports no adapters/ and no
    # TF Serving proto at run time (the codecs in api/ build and read them)
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_status_pb2,
        inference_pb2,
        model_management_pb2,
        regression_pb2,
    )

    from pyserving.adapters.protos import grpc_service_pb2
    from pyserving.adapters.protos.model_registry_pb2 import ListModelsRequest, ListModelsResponse


class InferCall(NamedTuple):
    """One Predict (or Open Inference Protocol infer) as a codec decoded it."""

    model: ModelRequest
    signature: str  # as the request named it; "" for the default
    inputs: Mapping[str, np.ndarray]
    output_filter: Sequence[str]
    deadline: float | None  # absolute, on the time.monotonic() clock


class DataPlane(Protocol):
    """The engine as every codec sees it; each method raises ServingError on a refusal."""

    async def infer(self, call: InferCall) -> Prediction: ...

    async def signature(self, model: ModelRequest, name: str) -> Signature:
        """The signature a request names, on the version it names: what a codec needs to
        decode (REST's JSON takes the signature's dtypes) or check (the Open Inference
        Protocol's datatypes) before its one `infer` call."""
        ...

    async def signature_defs(self, model: ModelRequest) -> tuple[int, Message]:
        """The version a request names and its SignatureDefMap (GetModelMetadata)."""
        ...

    async def classify(
        self,
        model: ModelRequest,
        request: classification_pb2.ClassificationRequest,
        deadline: float | None,
    ) -> Served[classification_pb2.ClassificationResponse]:
        """TF Serving's reply, and the answering version's fingerprint (as for the next two)."""
        ...

    async def regress(
        self, model: ModelRequest, request: regression_pb2.RegressionRequest, deadline: float | None
    ) -> Served[regression_pb2.RegressionResponse]: ...

    async def multi_inference(
        self,
        model: ModelRequest,
        request: inference_pb2.MultiInferenceRequest,
        deadline: float | None,
    ) -> Served[inference_pb2.MultiInferenceResponse]: ...

    async def model_status(
        self, model: ModelRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus (gRPC, and REST's `GET /v1/models/NAME`)."""
        ...

    async def model_ready(self, model: ModelRequest) -> bool:
        """The Open Inference Protocol's ModelReady: whether that version serves now."""
        ...

    async def model_metadata(self, model: ModelRequest) -> grpc_service_pb2.ModelMetadataResponse:
        """The Open Inference Protocol's ModelMetadata (the platform by Triton's name)."""
        ...

    async def list_models(self, request: ListModelsRequest) -> ListModelsResponse:
        """pyserving.ModelRegistry/ListModels."""
        ...

    async def health(self, service: str) -> int | None:
        """grpc.health.v1's ServingStatus of the server ("") or of a model; None when
        `service` is neither."""
        ...

    async def reload_config(
        self, request: model_management_pb2.ReloadConfigRequest
    ) -> model_management_pb2.ReloadConfigResponse:
        """HandleReloadConfigRequest: answers once the new config's models settle."""
        ...

    async def repository_index(self, ready_only: bool) -> list[IndexEntry]:
        """The repository API (UNIMPLEMENTED without --model_repository)."""
        ...

    async def repository_load(self, name: str) -> None: ...

    async def repository_unload(self, name: str) -> None: ...


class ExamplePlans(Protocol):
    """Classify, Regress and MultiInference as plans for one servable: TF Serving's
    request messages in, their replies out (api/tfserving/example_plans.py). Given by the
    composition root, as `Lifecycle` is, so that engine/ never reads TF Serving's messages
    (`request` is each method's TF Serving request message, opaque here)."""

    def classify(
        self, servable: Servable, request: Any, options: PlanOptions
    ) -> RequestPlan[Message]: ...

    def regress(
        self, servable: Servable, request: Any, options: PlanOptions
    ) -> RequestPlan[Message]: ...

    def multi_inference(
        self, servable: Servable, request: Any, options: PlanOptions
    ) -> RequestPlan[Message]: ...


@dataclass(frozen=True)
class Lifecycle:
    """What the in-process plane's views and admin calls read, from the composition root."""

    manager: Manager
    config: Callable[[], ModelsConfig]  # the config in force
    platform_of: Callable[[str], str]  # "" for a model no longer configured
    encoder: ViewEncoder
    reload: Reload | None = None  # None: config reloads are refused (UNIMPLEMENTED)
    repository: Repository | None = None  # None: no --model_repository


class InProcessDataPlane:
    """The engine in this process: each call is one `RequestCore.execute` with its plan;
    the views read `lifecycle` and Classify, Regress and MultiInference are planned by
    `examples` (without them, as in Predict-only tests, those calls answer UNIMPLEMENTED)."""

    def __init__(
        self,
        core: RequestCore,
        options: PlanOptions,
        lifecycle: Lifecycle | None = None,
        examples: ExamplePlans | None = None,
    ) -> None:
        self.core = core
        self.options = options
        self._lifecycle = lifecycle
        self._examples = examples
        self.server_health = ServerHealth(core.servable_map, lambda: self._life().config().names)

    def _plans(self) -> ExamplePlans:
        if self._examples is None:
            raise ServingError(Code.UNIMPLEMENTED, "this engine serves Predict only")
        return self._examples

    def _life(self) -> Lifecycle:
        if self._lifecycle is None:
            raise ServingError(Code.UNIMPLEMENTED, "this engine serves inference only")
        return self._lifecycle

    async def infer(self, call: InferCall) -> Prediction:
        signature, inputs, wanted = call.signature, call.inputs, call.output_filter
        return await self.core.execute(
            call.model,
            lambda servable: plan_predict(servable, signature, inputs, wanted),
            call.deadline,
        )

    async def signature(self, model: ModelRequest, name: str) -> Signature:
        with self.core.servable_map.acquire(model.name, model.version, model.label) as held:
            return select_signature(held.servable, name)

    async def signature_defs(self, model: ModelRequest) -> tuple[int, Message]:
        with self.core.servable_map.acquire(model.name, model.version, model.label) as held:
            return held.version, held.servable.signature_def_map()

    async def _example_plan(
        self, plan: Any, model: ModelRequest, request: Any, deadline: float | None
    ) -> Served[Any]:
        """Classify, Regress or MultiInference: its plan (api/tfserving/example_plans.py,
        handed in by the composition root) run through the request core."""
        options = self.options
        return await self.core.execute(
            model, lambda servable: with_fingerprint(plan(servable, request, options)), deadline
        )

    async def classify(
        self,
        model: ModelRequest,
        request: classification_pb2.ClassificationRequest,
        deadline: float | None,
    ) -> Served[classification_pb2.ClassificationResponse]:
        return await self._example_plan(self._plans().classify, model, request, deadline)

    async def regress(
        self, model: ModelRequest, request: regression_pb2.RegressionRequest, deadline: float | None
    ) -> Served[regression_pb2.RegressionResponse]:
        return await self._example_plan(self._plans().regress, model, request, deadline)

    async def multi_inference(
        self,
        model: ModelRequest,
        request: inference_pb2.MultiInferenceRequest,
        deadline: float | None,
    ) -> Served[inference_pb2.MultiInferenceResponse]:
        return await self._example_plan(self._plans().multi_inference, model, request, deadline)

    async def model_status(
        self, model: ModelRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        life = self._life()
        return life.encoder.status(
            model_views.model_status(life.manager, self.core.servable_map, model)
        )

    async def model_ready(self, model: ModelRequest) -> bool:
        return model_views.is_model_ready(self.core.servable_map, model)

    async def model_metadata(self, model: ModelRequest) -> grpc_service_pb2.ModelMetadataResponse:
        life = self._life()
        metadata = model_views.model_metadata(self.core.servable_map, model, life.platform_of)
        return life.encoder.metadata(metadata)

    async def list_models(self, request: ListModelsRequest) -> ListModelsResponse:
        life = self._life()
        listed = model_views.list_models(
            life.manager, self.core.servable_map, life.config(), request.model_name
        )
        return life.encoder.listing(listed)

    async def health(self, service: str) -> int | None:
        return self.server_health.status(service)

    async def reload_config(
        self, request: model_management_pb2.ReloadConfigRequest
    ) -> model_management_pb2.ReloadConfigResponse:
        life = self._life()
        await reload_config(life.reload, request)
        return life.encoder.reloaded()

    def _repository(self) -> Repository:
        repository = self._life().repository
        if repository is None:
            raise no_repository()
        return repository

    async def repository_index(self, ready_only: bool) -> list[IndexEntry]:
        return self._repository().index(ready_only)

    async def repository_load(self, name: str) -> None:
        await self._repository().load(name)

    async def repository_unload(self, name: str) -> None:
        await self._repository().unload(name)
