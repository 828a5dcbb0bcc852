"""The HTTP side on a real port: probes follow the serving map, metrics follow the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from pyserving.api.envelope.health import HealthCheckResponse, HealthService
from pyserving.api.envelope.http_server import (
    HttpServer,
    local_exposition,
    metrics_routes,
    probe_routes,
)
from pyserving.api.monitoring_config import DEFAULT_PATH
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable_map import ServableHandle, ServableMap
from pyserving.engine.server_health import ServerHealth
from tests.servables import ConstantServable


async def _get(port: int, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        return reply.status, reply.headers.get("Content-Type", ""), await reply.text()


class EngineHealth:
    """The data plane's `health` alone, answered by the engine's ServerHealth (or, once
    `gone`, refused as a front-end's plane refuses when the engine's socket is gone)."""

    def __init__(self, health: ServerHealth) -> None:
        self.engine = health
        self.gone = False

    async def health(self, service: str) -> int | None:
        if self.gone:
            raise ServingError(Code.UNAVAILABLE, "the engine is gone")
        return self.engine.status(service)


def run_with_server(
    server: HttpServer, body: Callable[[int], Awaitable[None]]
) -> None:  # one loop per test: the server must run on the loop that serves the client
    async def main() -> None:
        port = await server.start()
        try:
            await body(port)
        finally:
            await server.stop()

    asyncio.run(main())


def test_readyz_follows_the_serving_map_and_shutdown() -> None:
    servable_map = ServableMap()
    plane = EngineHealth(ServerHealth(servable_map, lambda: ["mnist", "other"]))
    # ignored below: EngineHealth is the health part of the plane
    health = HealthService(plane)  # type: ignore[arg-type]
    server = HttpServer(0, host="127.0.0.1")
    server.add_routes(probe_routes(health.status))

    async def body(port: int) -> None:
        assert (await _get(port, "/healthz"))[0] == 200
        status, _, text = await _get(port, "/readyz")
        assert status == 503 and "not ready" in text
        servable_map.add(ServableHandle("mnist", 1, ConstantServable(1)))
        assert (await _get(port, "/readyz"))[0] == 503  # "other" has no version yet
        servable_map.add(ServableHandle("other", 4, ConstantServable(4)))
        assert (await _get(port, "/readyz"))[0] == 200
        health.shutting_down = True  # this process drains, whatever the engine says
        assert (await _get(port, "/readyz"))[0] == 503
        assert await health.status("mnist") == HealthCheckResponse.NOT_SERVING
        assert await health.status("nope") is None
        assert (await _get(port, "/healthz"))[0] == 200
        health.shutting_down = False
        plane.engine.shutting_down = True  # the engine stops
        assert (await _get(port, "/readyz"))[0] == 503
        plane.engine.shutting_down = False
        assert (await _get(port, "/readyz"))[0] == 200
        plane.gone = True  # an engine that cannot answer is not serving, not an error
        assert (await _get(port, "/readyz"))[0] == 503

    run_with_server(server, body)


def test_a_model_added_after_start_counts_once_it_has_served() -> None:
    """A replica that is ready stays ready while one more model loads (or fails to)."""
    servable_map = ServableMap()
    models = ["mnist"]
    health = ServerHealth(servable_map, lambda: models)
    serving, not_serving = HealthCheckResponse.SERVING, HealthCheckResponse.NOT_SERVING
    assert health.status("") == not_serving  # start-up: every model must be available
    servable_map.add(ServableHandle("mnist", 1, ConstantServable(1)))
    assert health.status("") == serving
    models.append("added")  # e.g. a repository load, still loading
    assert health.status("") == serving
    assert health.status("added") == not_serving
    servable_map.add(ServableHandle("added", 2, ConstantServable(2)))
    assert health.status("") == serving
    servable_map.remove("added", 2)  # a counted model lost every version
    assert health.status("") == not_serving
    models.remove("added")  # unloaded: no longer configured, no longer counted
    assert health.status("") == serving
    servable_map.remove("mnist", 1)
    assert health.status("") == not_serving


@pytest.mark.parametrize("path", [DEFAULT_PATH, "/custom/metrics"])
def test_metrics_are_served_at_the_configured_path_only(path: str) -> None:
    registry = CollectorRegistry()
    counter = Counter("pyserving_test_things", "Things.", registry=registry)
    server = HttpServer(0, host="127.0.0.1")
    server.add_routes(metrics_routes(local_exposition(registry), path))

    async def body(port: int) -> None:
        counter.inc(3)
        status, content_type, text = await _get(port, path)
        assert status == 200 and content_type.startswith("text/plain")
        assert "pyserving_test_things_total 3.0" in text
        counter.inc()
        assert "pyserving_test_things_total 4.0" in (await _get(port, path))[2]
        other = "/custom/metrics" if path == DEFAULT_PATH else DEFAULT_PATH
        assert (await _get(port, other))[0] == 404

    run_with_server(server, body)


def test_a_busy_port_is_a_clear_error() -> None:
    async def main() -> None:
        first = HttpServer(0, host="127.0.0.1")
        port = await first.start()
        try:
            with pytest.raises(OSError, match=f"--rest_api_port={port}"):
                await HttpServer(port, host="127.0.0.1").start()
        finally:
            await first.stop()

    asyncio.run(main())
