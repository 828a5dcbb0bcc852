"""The HTTP side (`--rest_api_port`): metrics, probes, and TF Serving's REST API (rest_api.py).

aiohttp on the same asyncio loop as grpc.aio, so both share one process and one event
loop and nothing here blocks a request thread. Each feature contributes a list of
routes (`web.RouteDef`s); the composition root adds them before `start`:

    http = HttpServer(port)
    http.add_routes(probe_routes(health.status))
    http.add_routes(metrics_routes(local_exposition(registry), "/monitoring/prometheus/metrics"))
    http.add_routes(rest_api_routes(...))   # e.g. /v1/models/{name}:predict
    await http.start()
"""

from __future__ import annotations

import asyncio
import resource
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger("pyserving.http")

PROBE_PATHS = ("/healthz", "/readyz")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a REST connection may take, and how many may be open (the flags
    --rest_header_timeout_seconds, --rest_idle_timeout_seconds, --rest_max_connections).

    As nginx and uvicorn do: a request's headers must arrive within `header_timeout_s` of
    its first byte, a connection with no request in flight is closed after
    `idle_timeout_s`, and past `max_connections` open the oldest idle one is closed to
    make room (or, when none is idle, the newcomer). A body's own timeout is
    http_body.read_body's."""

    header_timeout_s: float = 20.0
    idle_timeout_s: float = 60.0
    max_connections: int = 0  # 0: half the process's open-file limit

    def connection_cap(self) -> int:
        if self.max_connections > 0:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(64, soft // 2) if soft != resource.RLIM_INFINITY else 1 << 16


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a header timer around it.

    Composition, not a subclass: every asyncio callback is forwarded to aiohttp's handler,
    and the timer is armed by the first byte of a request and disarmed when the request
    reaches the application (`_Connections.middleware`)."""

    def __init__(self, inner: Any, connections: _Connections) -> None:
        self._inner = inner
        self._connections = connections
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.busy = False  # a request is being handled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._inner.connection_made(transport)
        self._connections.opened(self)

    def data_received(self, data: bytes) -> None:
        if not self.busy and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self._connections.limits.header_timeout_s, self._headers_late
            )
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._connections.closed(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_began(self) -> None:
        self.busy = True
        self._disarm()

    def request_ended(self) -> None:
        self.busy = False

    def close(self, reason: str) -> None:
        log.info("rest_connection_closed", reason=reason, peer=self._peer())
        if self.transport is not None:
            self.transport.close()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        self.close(
            f"request headers not received within {self._connections.limits.header_timeout_s:g}"
            " s of their first byte (--rest_header_timeout_seconds)"
        )

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class _Connections:
    """The open connections of one HTTP server, oldest first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._cap = limits.connection_cap()
        self._open: dict[asyncio.BaseTransport, _Connection] = {}

    def opened(self, connection: _Connection) -> None:
        if len(self._open) >= self._cap:
            idle = next((c for c in self._open.values() if not c.busy), None)
            if idle is None:
                connection.close(
                    f"{self._cap} connections are open, all busy (--rest_max_connections)"
                )
                return
            idle.close(
                f"{self._cap} connections are open (--rest_max_connections): the oldest idle "
                "one makes room for a new one"
            )
        assert connection.transport is not None
        self._open[connection.transport] = connection

    def closed(self, connection: _Connection) -> None:
        if connection.transport is not None:
            self._open.pop(connection.transport, None)

    @property
    def count(self) -> int:
        return len(self._open)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        connection = self._open.get(request.transport) if request.transport else None
        if connection is None:
            return await handler(request)
        connection.request_began()
        try:
            return await handler(request)
        finally:
            connection.request_ended()


class HttpServer:
    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        ssl_context: ssl.SSLContext | None = None,
        limits: ConnectionLimits = ConnectionLimits(),
        reuse_port: bool = False,
    ) -> None:
        self._connections = _Connections(limits)
        self._reuse_port = reuse_port  # front-end processes share the port (--workers)
        self.app = web.Application(middlewares=[self._connections.middleware])
        self._host = host
        self._ssl_context = ssl_context  # HTTPS when set (--ssl_config_file)
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def open_connections(self) -> int:
        return self._connections.count

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Add routes; a path registered twice for one method is an error at add time."""
        self.app.router.add_routes(list(routes))

    async def start(self) -> int:
        """Listen; returns the bound port (the requested one, or a free one for port 0)."""
        # lingering_time=0: a body left unread (a refused oversize request) is never
        # drained; the connection closes once the reply is written. keepalive_timeout is
        # aiohttp's own idle timer: from a connection's start, and after each reply.
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            lingering_time=0,
            keepalive_timeout=self._connections.limits.idle_timeout_s,
        )
        await runner.setup()
        server = runner.server
        assert server is not None
        connections = self._connections
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                lambda: _Connection(server(), connections),
                self._host,
                self._requested_port,
                reuse_address=True,
                reuse_port=self._reuse_port or None,
                ssl=self._ssl_context,
            )
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                f"cannot listen on {self._host}:{self._requested_port} ({exc.strerror}): is "
                f"another server using --rest_api_port={self._requested_port}? Stop it or "
                "choose another port"
            ) from None
        self._runner = runner
        self.port = int(self._listener.sockets[0].getsockname()[1])
        scheme = "https" if self._ssl_context is not None else "http"
        log.info("http_server_listening", address=f"{self._host}:{self.port}", scheme=scheme)
        return self.port

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connections; the open ones are closed below
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None


Exposition = Callable[[], Awaitable[bytes]]


def local_exposition(
    registry: CollectorRegistry | None, extra: Callable[[], str] | None = None
) -> Exposition:
    """Prometheus text of `registry`, followed by `extra`'s text (TF Serving's own series,
    rendered as its exporter does): the engine's whole exposition."""

    async def exposition() -> bytes:
        body = generate_latest(registry) if registry is not None else b""
        if extra is not None:
            body += extra().encode()
        return body

    return exposition


def metrics_routes(exposition: Exposition, path: str) -> list[web.RouteDef]:
    """The exposition at `path` (TF Serving's path by default): this process's registry,
    or in a front-end the engine's, which counts every process's requests."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=await exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get(path, metrics)]


def probe_routes(health_status: Callable[[str], Awaitable[int | None]]) -> list[web.RouteDef]:
    """Kubernetes probes. `health_status` is the gRPC health service's `status` (the
    engine's answer and this process's drain), so the two never disagree: ready means
    every configured model has an available version."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if await health_status("") == health_pb2.HealthCheckResponse.SERVING:
            return web.Response(text="ready\n")
        return web.Response(
            status=503,
            text="not ready: a configured model has no available version yet, or stopping\n",
        )

    return [web.get(PROBE_PATHS[0], healthz), web.get(PROBE_PATHS[1], readyz)]
