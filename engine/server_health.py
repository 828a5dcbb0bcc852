"""The engine's health: SERVING once every configured model has an available version.

Status is computed from the serving map when asked, so it can never lag behind it. The
empty service name means the whole server, as grpc.health.v1 says; a model name may be
asked for too. A front-end ANDs its own drain with this answer (api/envelope/health.py).

Once the server has been ready, a model added later (a config reload, a repository load)
counts towards the whole server's readiness only from its first available version on: a
Kubernetes readiness probe must not take a serving replica out of its Service while it
loads one more model (nor keep it out when that load fails). A counted model that loses
every version makes the server NOT_SERVING again, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from grpc_health.v1 import health_pb2

from pyserving.engine.servable_map import ServableMap

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServerHealth:
    """grpc.health.v1's ServingStatus of the server and of each configured model."""

    def __init__(self, servable_map: ServableMap, models: Callable[[], Sequence[str]]) -> None:
        self._map = servable_map
        self._models = models
        self.shutting_down = False  # the engine stops: nothing serves any more
        self._counted: set[str] | None = None  # None until the server has been ready

    def _server_ready(self, available: Mapping[str, object]) -> bool:
        models = set(self._models())
        if self._counted is None:
            if not models.issubset(available):
                return False
            self._counted = models
        counted = (self._counted & models) | (models & available.keys())
        self._counted = counted
        return counted.issubset(available)

    def status(self, service: str) -> int | None:
        """The status of `service` (a model name or ""), or None if it is unknown."""
        available = self._map.snapshot
        if service == "":
            ready = not self.shutting_down and self._server_ready(available)
        elif service in self._models():
            ready = not self.shutting_down and service in available
        else:
            return None
        return SERVING if ready else NOT_SERVING
