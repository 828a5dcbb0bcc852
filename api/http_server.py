"""The HTTP side (`--rest_api_port`): metrics, probes, and TF Serving's REST API (rest_api.py).

aiohttp on the same asyncio loop as grpc.aio, so both share one process and one event
loop and nothing here blocks a request thread. Each feature contributes a list of
routes (`web.RouteDef`s); the composition root adds them before `start`:

    http = HttpServer(port)
    http.add_routes(probe_routes(health.status))
    http.add_routes(metrics_routes(registry, "/monitoring/prometheus/metrics"))
    http.add_routes(rest_api_routes(...))   # e.g. /v1/models/{name}:predict
    await http.start()
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable

import structlog
from aiohttp import web
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger("pyserving.http")

PROBE_PATHS = ("/healthz", "/readyz")


class HttpServer:
    def __init__(
        self, port: int, host: str = "0.0.0.0", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.app = web.Application()
        self._host = host
        self._ssl_context = ssl_context  # HTTPS when set (--ssl_config_file)
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Add routes; a path registered twice for one method is an error at add time."""
        self.app.router.add_routes(list(routes))

    async def start(self) -> int:
        """Listen; returns the bound port (the requested one, or a free one for port 0)."""
        # lingering_time=0: a body left unread (a refused oversize request) is never
        # drained; the connection closes once the reply is written.
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, lingering_time=0)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._requested_port,
            reuse_address=True,
            ssl_context=self._ssl_context,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                f"cannot listen on {self._host}:{self._requested_port} ({exc.strerror}): is "
                f"another server using --rest_api_port={self._requested_port}? Stop it or "
                "choose another port"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        scheme = "https" if self._ssl_context is not None else "http"
        log.info("http_server_listening", address=f"{self._host}:{self.port}", scheme=scheme)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def metrics_routes(
    registry: CollectorRegistry | None, path: str, extra: Callable[[], str] | None = None
) -> list[web.RouteDef]:
    """Prometheus text exposition of `registry` at `path` (TF Serving's path by default),
    followed by `extra`'s text (TF Serving's own series, rendered as its exporter does)."""

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry) if registry is not None else b""
        if extra is not None:
            body += extra().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get(path, metrics)]


def probe_routes(health_status: Callable[[str], int | None]) -> list[web.RouteDef]:
    """Kubernetes probes. `health_status` is the gRPC health service's `status`, so the
    two never disagree: ready means every configured model has an available version."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if health_status("") == health_pb2.HealthCheckResponse.SERVING:
            return web.Response(text="ready\n")
        return web.Response(
            status=503,
            text="not ready: a configured model has no available version yet, or stopping\n",
        )

    return [web.get(PROBE_PATHS[0], healthz), web.get(PROBE_PATHS[1], readyz)]
