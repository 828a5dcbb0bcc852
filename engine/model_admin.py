"""The admin calls every front-end forwards to the engine: config reloads (TF Serving's
HandleReloadConfigRequest) and the model repository (the Open Inference Protocol's
repository extension).

The work itself lives in adapters/ (the live config, the repository folder); engine/
sees it through `Reload` and `Repository`, wired by the composition root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from pyserving.engine.errors import Code, ServingError, invalid_argument

# Parses a ModelServerConfig message (INVALID_ARGUMENT when it does not), applies it and
# waits until its models settle; returns the load errors (adapters' LiveConfig.reload_message).
Reload = Callable[[Message], Awaitable[list[str]]]


@dataclass(frozen=True)
class IndexEntry:
    """A RepositoryIndex row; a model never loaded has its name only (version "")."""

    name: str
    version: str = ""
    state: str = ""
    reason: str = ""


class Repository(Protocol):
    """The repository API's three operations (adapters' RepositoryControl)."""

    def index(self, ready_only: bool = False) -> list[IndexEntry]: ...

    async def load(self, name: str) -> None: ...

    async def unload(self, name: str) -> None: ...


def no_repository() -> ServingError:
    return ServingError(
        Code.UNIMPLEMENTED, "the repository API is off: start the server with --model_repository"
    )


async def reload_config(reload: Reload | None, request: Any) -> None:
    """HandleReloadConfigRequest with TF Serving's refusals; `request` is TF Serving's
    ReloadConfigRequest (read through protobuf's generic API: engine/ imports no TF Serving
    proto), and the success answer is the view encoder's (`reloaded`)."""
    if reload is None:
        raise ServingError(Code.UNIMPLEMENTED, "this server does not take config reloads")
    config: Message = request.config
    if config.WhichOneof("config") != "model_config_list":
        # As TF Serving: an empty request is refused rather than unloading everything.
        raise invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
            "ModelConfigList is currently supported"
        )
    errors = await reload(config)
    if errors:
        # The config is in force (the other models serve); the failed versions say why.
        raise ServingError(Code.UNKNOWN, "; ".join(errors))
