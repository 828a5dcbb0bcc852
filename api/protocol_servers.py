"""Every protocol a process serves, built over one DataPlane: the gRPC server (TF Serving's

services, the Open Inference Protocol, ListModels, health, reflection) and the HTTP server
(probes, metrics, TF Serving's REST API, the Open Inference Protocol's REST, the
repository API).

The single process of `--workers=0` builds it over the in-process plane; each front-end
process of `--workers=N` builds the very same servers over the remote one, with its ports
shared (SO_REUSEPORT), so what a client sees does not depend on how many processes serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

from pyserving.adapters.model_config import ServerConfig
from pyserving.adapters.protos import grpc_service_pb2
from pyserving.adapters.request_log.logger import RequestLogger
from pyserving.adapters.request_log.writer import RecordWriter, WriterOptions
from pyserving.api.envelope.health import HealthService
from pyserving.api.envelope.http_body import RestOptions
from pyserving.api.envelope.http_server import (
    ConnectionLimits,
    Exposition,
    HttpServer,
    metrics_routes,
    probe_routes,
)
from pyserving.api.envelope.request_envelope import Envelope, add_service
from pyserving.api.envelope.restricted_api import (
    MODEL_CONFIG,
    MODEL_REPOSITORY,
    Restrictions,
    parse_restricted_api,
)
from pyserving.api.envelope.tensor_codec import elements_within, tensor_bytes_within
from pyserving.api.flag_compat import check_credentials, grpc_channel_arguments
from pyserving.api.monitoring_config import load_monitoring_config
from pyserving.api.oip import grpc_service as oip_grpc
from pyserving.api.oip import repository as oip_repository
from pyserving.api.oip import rest_routes as oip_rest
from pyserving.api.startup_checks import check_request_log_flags
from pyserving.api.tfserving import model_listing, profiler_service
from pyserving.api.tfserving.model_service import ModelService
from pyserving.api.tfserving.prediction_service import PredictionService
from pyserving.api.tfserving.rest_api import RestApi
from pyserving.api.tls import load_ssl_config
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import ConfigurationError
from pyserving.engine.request_core import PlanOptions

if TYPE_CHECKING:  # annotations only
    from pyserving.api.server_options import ServerOptions

log = structlog.get_logger("pyserving.server")

# Prometheus' default scrape path, served beside TF Serving's (--monitoring_config_file's),
# so a scrape config that names no metrics_path finds the same exposition.
PROMETHEUS_DEFAULT_PATH = "/metrics"


def plan_options(options: ServerOptions) -> PlanOptions:
    return PlanOptions(
        method_name_check=options.enable_signature_method_name_check,
        max_elements=elements_within(options.grpc_max_message_bytes),
        max_tensor_bytes=options.max_request_tensor_bytes
        or tensor_bytes_within(options.grpc_max_message_bytes),
    )


def request_log_from_flags(
    options: ServerOptions,
    configs: Callable[[], ServerConfig],
    on_drop: Callable[[str], None] = lambda reason: None,
    on_written: Callable[[], None] = lambda: None,
) -> RequestLogger:
    """The request log of every model's logging_config, files bounded by the flags. Each
    process writes its own files (created O_EXCL, so processes never share one)."""
    check_request_log_flags(options)
    writer = RecordWriter(
        WriterOptions(
            max_bytes=options.request_log_max_bytes,
            max_files=options.request_log_max_files,
            queue_size=options.request_log_queue_size,
        ),
        on_drop=on_drop,
        on_written=on_written,
    )
    return RequestLogger(configs, writer, on_drop=on_drop)


class ProtocolServers:
    """The gRPC and HTTP servers of one process; `start`, then `stop` to drain."""

    def __init__(
        self,
        options: ServerOptions,
        plane: DataPlane,
        envelope: Envelope,
        request_log: RequestLogger,
        exposition: Exposition,
        *,
        shared_ports: bool = False,
        unix_socket: bool = True,
        profiler: bool = False,
    ) -> None:
        self.options = options
        self.plane = plane
        self.envelope = envelope
        self.request_log = request_log
        self.exposition = exposition
        self.shared_ports = shared_ports  # SO_REUSEPORT: front-ends listen side by side
        self.unix_socket = unix_socket
        self.serve_profiler = profiler and options.enable_profiler
        # Each raises a ConfigurationError naming the flag and what to change.
        check_credentials(options)
        self.channel_arguments = grpc_channel_arguments(options.grpc_channel_arguments)
        self.tls = load_ssl_config(options.ssl_config_file)
        self.restrictions = Restrictions(parse_restricted_api(options.restricted_api))
        self.prometheus = load_monitoring_config(options.monitoring_config_file)
        self.health = HealthService(plane)
        self.grpc_server: grpc.aio.Server | None = None
        self.http_server: HttpServer | None = None
        self.profiler: profiler_service.ProfilerService | None = None
        self.port = 0
        self.http_port = 0

    # ------------------------------------------------------------------ gRPC
    def _oip_extensions(self) -> tuple[str, ...]:
        """The protocol extensions ServerMetadata names: the repository's only when on."""
        repository = ("model_repository",) if self.options.model_repository else ()
        return ("binary_tensor_data", *repository)

    def _grpc_server(self) -> grpc.aio.Server:
        options = self.options
        max_bytes = options.grpc_max_message_bytes
        reuse = [("grpc.so_reuseport", 1)] if self.shared_ports else []
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                *reuse,
                *self.channel_arguments,  # --grpc_channel_arguments, last so they win
            ],
            maximum_concurrent_rpcs=options.grpc_max_threads or None,
        )
        envelope, plane = self.envelope, self.plane
        add_service(
            server,
            envelope,
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
            PredictionService(
                plane,
                plan_options(options),
                self.request_log,
                as_tensor_content=options.enable_serialization_as_tensor_content,
            ),
        )
        add_service(
            server,
            envelope,
            model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
            self.restrictions.guard(
                ModelService(plane), MODEL_CONFIG, {"HandleReloadConfigRequest"}
            ),
        )
        add_service(  # the Open Inference Protocol's inference RPCs (not its repository's)
            server,
            envelope,
            oip_grpc.SERVICE,
            oip_grpc.InferenceService(
                plane, plan_options(options), self._oip_extensions(), self.request_log
            ),
            methods=oip_grpc.METHODS,
        )
        if options.model_repository:  # the repository API is off without the flag
            add_service(
                server,
                envelope,
                grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
                self.restrictions.guard(
                    oip_repository.RepositoryService(plane),
                    MODEL_REPOSITORY,
                    oip_repository.METHODS,
                ),
                methods=oip_repository.METHODS,
            )
        model_listing.add_to_server(model_listing.ModelListingService(plane), server, envelope)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.serve_profiler:  # on by default, as TF Serving's; TensorFlow runs here
            self.profiler = profiler_service.add_to_server(server)
            log.info("profiler_service_enabled", service=profiler_service.SERVICE_NAME)
        reflection.enable_server_reflection(
            (
                prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
                model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                oip_grpc.SERVICE.full_name,
                model_listing.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        return server

    def _add_grpc_ports(self, server: grpc.aio.Server) -> None:
        """The TCP port, and the Unix socket when asked, with TLS when configured, or ALTS
        with --use_alts_credentials (server.cc's BuildServerCredentials: ALTS first)."""
        options = self.options
        credentials = self.tls.grpc_credentials() if self.tls is not None else None
        if options.use_alts_credentials:  # the handshake needs Google Cloud's service
            credentials = grpc.alts_server_credentials()
        addresses = [f"0.0.0.0:{options.port}"]
        if options.grpc_socket_path and self.unix_socket:
            addresses.append(f"unix:{options.grpc_socket_path}")
        for address in addresses:
            try:
                if credentials is None:
                    bound = server.add_insecure_port(address)
                else:
                    bound = server.add_secure_port(address, credentials)
            except RuntimeError as exc:
                if options.use_alts_credentials:
                    hint = (
                        "gRPC makes ALTS server credentials only on Google Cloud (it checks "
                        "for GCP first, as TF Serving's does); off it, drop "
                        "--use_alts_credentials"
                    )
                elif address.startswith("unix:"):
                    hint = "does its folder exist, and is the path free? Fix --grpc_socket_path"
                else:
                    hint = (
                        f"is another server using --port={options.port}? Stop it or "
                        "choose another port"
                    )
                raise ConfigurationError(f"cannot listen on {address} ({exc}): {hint}") from None
            if not address.startswith("unix:"):
                self.port = bound
        kind = "alts" if options.use_alts_credentials else "tls" if self.tls else "insecure"
        log.info("grpc_listening", addresses=addresses, credentials=kind)

    # ------------------------------------------------------------------ HTTP
    def _rest_options(self) -> RestOptions:
        options = self.options
        return RestOptions(
            timeout_s=options.rest_api_timeout_in_ms / 1000,
            max_body_bytes=options.grpc_max_message_bytes,
            max_concurrent=options.rest_api_num_threads,
            cors=options.rest_api_enable_cors_support,
            plan_options=plan_options(options),
            body_timeout_s=options.rest_body_timeout_seconds,
        )

    def _repository_routes(self) -> list[Any]:
        if not self.options.model_repository:
            return []  # off: its paths answer 404
        timeout_ms = self.options.rest_api_timeout_in_ms
        return oip_repository.RepositoryRoutes(
            self.plane,
            self.envelope,
            self.restrictions,
            timeout_s=timeout_ms / 1000 if timeout_ms > 0 else None,
            max_body_bytes=self.options.grpc_max_message_bytes,
            body_timeout_s=self.options.rest_body_timeout_seconds,
        ).routes()

    async def _start_http(self) -> None:
        options = self.options
        if not options.rest_api_port:
            return
        ssl_context = self.tls.ssl_context() if self.tls is not None else None
        http = HttpServer(
            options.rest_api_port,
            ssl_context=ssl_context,
            limits=ConnectionLimits(
                header_timeout_s=options.rest_header_timeout_seconds,
                idle_timeout_s=options.rest_idle_timeout_seconds,
                max_connections=options.rest_max_connections,
            ),
            reuse_port=self.shared_ports,
        )
        http.add_routes(probe_routes(self.health.status))
        if self.prometheus.enabled:
            for path in dict.fromkeys((self.prometheus.path, PROMETHEUS_DEFAULT_PATH)):
                http.add_routes(metrics_routes(self.exposition, path))
        http.add_routes(self._repository_routes())
        rest_options = self._rest_options()
        rest_api = RestApi(self.plane, self.envelope, rest_options, self.request_log)
        http.add_routes(rest_api.routes())
        oip = oip_rest.OipRest(
            self.plane,
            self.envelope,
            rest_options,
            self._oip_extensions(),
            rest_api.slots,
            self.request_log,
        )
        http.add_routes(oip.routes())
        try:
            self.http_port = await http.start()
        except (OSError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        self.http_server = http

    # ------------------------------------------------------------------ lifetime
    async def start(self) -> None:
        server = self._grpc_server()
        self._add_grpc_ports(server)
        await server.start()
        self.grpc_server = server
        log.info(
            "grpc_server_listening",
            address=f"0.0.0.0:{self.port}",
            unix_socket=(self.options.grpc_socket_path if self.unix_socket else "") or None,
            tls=self.tls is not None,
        )
        try:
            await self._start_http()
        except ConfigurationError:
            await server.stop(None)
            raise

    async def drain(self, grace_s: float) -> None:
        """Refuse new requests and let those in flight finish within `grace_s`; the HTTP
        server stays up (the last scrapes and probes) until `close`."""
        self.health.shutting_down = True
        if self.grpc_server is not None:
            started = time.monotonic()
            self.envelope.start_draining()
            if not await self.envelope.wait_quiet(grace_s):
                log.error("shutdown_grace_expired", active_requests=self.envelope.active)
            await self.grpc_server.stop(grace=max(0.0, grace_s - (time.monotonic() - started)))
        if self.profiler is not None:
            await self.profiler.close()

    async def close(self) -> None:
        if self.http_server is not None:
            await self.http_server.stop()
