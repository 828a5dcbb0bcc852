"""The composition root: builds the bus, manager, sources and gRPC server, runs, and stops.

Everything stateful is created here and passed down; nothing below keeps global state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Collection
from typing import Any, TypeGuard

import structlog

import pyserving
from pyserving.adapters.event_log import EventLogWriter, last_sequence
from pyserving.adapters.frontend_supervisor import FrontendSupervisor
from pyserving.adapters.ipc import EngineEndpoint
from pyserving.adapters.ipc.engine_services import (
    Generation,
    engine_handler,
    engine_services,
)
from pyserving.adapters.lifecycle_log import log_event
from pyserving.adapters.live_config import LiveConfig
from pyserving.adapters.loaders.model_loaders import ModelLoaders, WarmupOptions
from pyserving.adapters.loaders.platforms import PlatformOptions, marker_files
from pyserving.adapters.metrics import ServingMetrics, new_registry
from pyserving.adapters.model_config import (
    ConfigError,
    ModelConfig,
    ServerConfig,
)
from pyserving.adapters.model_repository import ModelRepository, RepositoryControl
from pyserving.adapters.promotion_config import load_promotion_gates
from pyserving.adapters.sources.object_store import (
    CacheEvictor,
    ObjectStore,
    RemoteStorage,
    VersionCache,
    is_remote,
    redact,
)
from pyserving.adapters.sources.storage_path import LocalStorage, VersionStorage
from pyserving.adapters.tfserving_metrics import (
    DEFAULT_THREAD_POOL_NAME,
    TFServingMetrics,
    tee_series,
)
from pyserving.adapters.tracing import tracing_from_environment
from pyserving.api.commands.promotion_requests import requests_for
from pyserving.api.envelope.http_server import (
    local_exposition,
)
from pyserving.api.envelope.request_envelope import Envelope, SeriesCache
from pyserving.api.envelope.restricted_api import (
    Restrictions,
    parse_restricted_api,
)
from pyserving.api.flag_compat import (
    refused_flags,
)
from pyserving.api.flags import ServerOptions
from pyserving.api.frontend import frontend_args
from pyserving.api.monitoring_config import load_monitoring_config
from pyserving.api.protocol_servers import ProtocolServers, plan_options, request_log_from_flags
from pyserving.api.startup_checks import (
    check_distinct_ports,
    check_model_repository,
    models_from_flags,
)
from pyserving.api.tensorflow_settings import (
    TensorFlowSettings,
    apply_xla_flags,
    session_config_text,
    settings_from_flags,
)
from pyserving.api.tfserving.example_plans import EXAMPLE_PLANS
from pyserving.api.tfserving.warmup_requests import make_warmup_answer
from pyserving.api.view_messages import engine_lifecycle
from pyserving.engine.batching import BatchingRunner
from pyserving.engine.bus import EventBus
from pyserving.engine.data_plane import InProcessDataPlane
from pyserving.engine.errors import ConfigurationError
from pyserving.engine.events import (
    Event,
    PromotionGatesSet,
    ServerStarted,
    ServerStopped,
    ShutdownRequested,
)
from pyserving.engine.manager import LoadAttempts, Manager
from pyserving.engine.per_version_batching import PerVersionBatchingRunner
from pyserving.engine.policy import POLICIES
from pyserving.engine.promotion import PromotionJudge
from pyserving.engine.request_core import RequestCore
from pyserving.engine.runner import DirectRunner, Runner
from pyserving.engine.servable_map import ServableMap

__all__ = ["ConfigurationError", "ModelConfig", "ModelServer", "models_from_flags", "serve"]

log = structlog.get_logger("pyserving.server")

# How long front-ends may take to listen (each imports in about 0.4 s; a busy machine
# loading models at the same time is slower).
FRONTEND_START_TIMEOUT_S = 60.0


def restrictions_from_flags(options: ServerOptions) -> Restrictions:
    return Restrictions(parse_restricted_api(options.restricted_api))


def repository_from_flags(
    options: ServerOptions, live_config: LiveConfig, manager: Manager
) -> RepositoryControl | None:
    """The repository API's operations with --model_repository; None (API off) without."""
    check_model_repository(options)
    if not options.model_repository:
        return None
    return RepositoryControl(
        ModelRepository(options.model_repository), live_config, manager.statuses
    )


def config_digest(config: ServerConfig) -> str:
    """A fingerprint of the models config, so two logs can be told to have run the same one."""
    return hashlib.sha256(repr(config).encode()).hexdigest()


def promotion_from_flags(options: ServerOptions) -> PromotionJudge | None:
    """The promotion gates' judge, when --promotion_gates_file names gates."""
    configs = load_promotion_gates(options.promotion_gates_file)  # PromotionConfigError
    return PromotionJudge(configs, requests_for) if configs else None


def event_log_from_flags(options: ServerOptions) -> EventLogWriter | None:
    if not options.event_log:
        return None
    return EventLogWriter(
        options.event_log,
        fsync=options.event_log_fsync,
        max_bytes=options.event_log_max_bytes,
        backups=options.event_log_backups,
        fsync_interval_s=options.event_log_fsync_interval_seconds,
    )


def loaders_from_flags(
    options: ServerOptions,
    publish: Callable[[Event], object],
    platform_of: Callable[[str], str],
    session_observer: object = None,
    settings: TensorFlowSettings | None = None,
) -> ModelLoaders:
    """Each model's loader, from its platform, with --enable_model_warmup wrapped around."""
    settings = settings or tensorflow_settings(options)
    platform_options = PlatformOptions(
        saved_model_tags=settings.saved_model_tags,
        session_config=settings.session_config,
        session_observer=session_observer,
        prefer_tflite_model=settings.prefer_tflite_model,
        use_tflite_model=options.use_tflite_model,
        num_tflite_pools=settings.num_tflite_pools,
        num_tflite_interpreters_per_pool=settings.num_tflite_interpreters_per_pool,
        per_model_batching=settings.per_model_batching,
    )
    warmup = (
        WarmupOptions(make_warmup_answer(plan_options(options)), settings.warmup_iterations)
        if settings.enable_model_warmup
        else None
    )
    return ModelLoaders(platform_options, publish, platform_of, warmup)


def tensorflow_settings(options: ServerOptions) -> TensorFlowSettings:
    """The tensorflow platform's settings from the flags or --platform_config_file."""
    return settings_from_flags(options)


def tfserving_metrics_from_flags(
    options: ServerOptions, runner: Runner, known_models: Callable[[], Collection[str]]
) -> TFServingMetrics | None:
    """TF Serving's series unless --metrics_names=pyserving; batches are labelled with TF
    Serving's thread pool name (its default without --batching_parameters_file)."""
    if options.metrics_names == "pyserving":
        return None
    pool = DEFAULT_THREAD_POOL_NAME
    if batches(runner) and options.batching_parameters_file:
        pool = runner.options.thread_pool_name
    return TFServingMetrics(known_models, thread_pool_name=pool)


def runner_from_flags(
    options: ServerOptions,
    publish: Callable[[Event], Any],
    on_reject: Callable[[str, str, str], None] | None = None,
    settings: TensorFlowSettings | None = None,
) -> Runner:
    """The batching scheduler with --enable_batching (or the platform config file's
    batching_parameters), else one model call per request."""
    settings = settings or tensorflow_settings(options)
    batching = settings.batching
    if batching is None:
        return DirectRunner(options.num_request_threads)
    log.info(
        "batching_enabled", per_model=settings.per_model_batching, **dataclasses.asdict(batching)
    )
    if settings.per_model_batching:  # each version by its batching_params.pbtxt, or not at all
        return PerVersionBatchingRunner(
            batching, DirectRunner(options.num_request_threads), publish, on_reject
        )
    return BatchingRunner(batching, publish=publish, on_reject=on_reject)


def batches(runner: Runner) -> TypeGuard[BatchingRunner | PerVersionBatchingRunner]:
    """Whether requests may wait in batching queues (a scheduler's gauges and traces)."""
    return isinstance(runner, BatchingRunner | PerVersionBatchingRunner)


class ModelServer:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._init_transport()  # before anything loads: TensorFlow's threads are set here
        self.config = models_from_flags(options)
        first_seq = last_sequence(options.event_log) + 1 if options.event_log else 1
        self.bus = EventBus(first_seq=first_seq)
        # OpenTelemetry traces, when the OTEL_* variables ask for them
        self.tracing = tracing_from_environment()
        # Rejections are counted by the metrics, made later in _init_observability.
        self.runner = runner_from_flags(
            options,
            self.bus.publish,
            lambda *reject: self.metrics.batch_rejected(*reject),
            self.tf_settings,
        )
        if self.tracing is not None and batches(self.runner):
            self.runner.tracer = self.tracing.requests
        self.servable_map = ServableMap()
        # TF Serving's own series (--metrics_names); TensorFlow's Session work feeds them.
        self.tf_metrics = tfserving_metrics_from_flags(
            options, self.runner, lambda: set(self.live_config.model_names())
        )
        # The manager asks for a version's loader once, when the version is aspired: the
        # model's platform is then the one the config in force names.
        self.loaders = loaders_from_flags(
            options,
            self.bus.publish,
            lambda model: self.live_config.platform_of(model),
            session_observer=self.tf_metrics,
            settings=self.tf_settings,
        )
        self.promotion = promotion_from_flags(options)
        self.manager = Manager(
            publish=self.bus.publish,
            loader_for=self.loaders,
            servable_map=self.servable_map,
            policy=POLICIES[options.aspired_version_policy](),
            retry=LoadAttempts(
                max_num_load_retries=options.max_num_load_retries,
                load_retry_interval_s=options.load_retry_interval_micros / 1e6,
                load_timeout_s=options.load_timeout_seconds,
            ),
            num_load_threads=max(1, options.num_load_threads),
            num_unload_threads=max(1, options.num_unload_threads),
            allow_unavailable_labels=options.allow_version_labels_for_unavailable_models,
            fingerprint=self.loaders.fingerprint,
            promotion=self.promotion,
        )
        self.event_log = event_log_from_flags(options)
        self.bus.subscribe(self.manager.handle)  # it alone writes the serving map
        self.bus.subscribe(log_event)
        if self.tracing is not None:
            self.bus.subscribe(self.tracing.lifecycle)
        if self.event_log is not None:
            self.bus.subscribe(self.event_log)
        self.cache: VersionCache | None = None  # made when a model first lives in a store
        self.live_config = LiveConfig(
            self.config,
            self.bus.publish,
            self.manager,
            self.bus.wait_idle,
            source_poll_wait_s=options.file_system_poll_wait_seconds,
            config_file=options.model_config_file,
            config_poll_wait_s=options.model_config_file_poll_wait_seconds,
            storage_for=self._storage,
        )
        restrictions_from_flags(options)  # refused now, before anything loads
        self.repository = repository_from_flags(options, self.live_config, self.manager)
        self.port = 0
        self._init_observability()

    def _init_observability(self) -> None:
        """Metrics on a private registry, fed by the bus; the HTTP server's settings."""
        self.prometheus = load_monitoring_config(self.options.monitoring_config_file)
        check_distinct_ports(self.options)
        rest_port = self.options.rest_api_port
        if self.options.monitoring_config_file and self.prometheus.enabled and not rest_port:
            log.warning(
                "metrics_not_served",
                hint="metrics are served on the HTTP port: give --rest_api_port=PORT",
            )
        self.metrics_registry = new_registry()
        self.metrics = ServingMetrics(
            self.metrics_registry,
            known_models=lambda: set(self.live_config.model_names()),
            version_states=self.manager.states,
        )
        self.bus.subscribe(self.metrics.handle)
        # Sampled requests of models with a logging_config, in the config in force.
        self.request_log = request_log_from_flags(
            self.options,
            lambda: self.live_config.current,
            self.metrics.request_log_drop,
            self.metrics.request_log_written,
        )
        series: list[Callable[[str, str], object]] = [self.metrics.request_series]
        core_runner: Runner = self.runner
        on_runtime = None
        if self.tf_metrics is not None:
            self.bus.subscribe(self.tf_metrics.handle)
            series.append(self.tf_metrics.request_series)
            on_runtime = self.tf_metrics.observe_runtime
        tracer = None
        if self.tracing is not None:
            tracer = self.tracing.requests
            core_runner = self.tracing.runner(core_runner, batches(self.runner))
        # Every protocol's requests pass through this one envelope (drain, ids, metrics, traces).
        self.series = tee_series(*series)  # front-ends' requests are counted here too
        self.envelope = Envelope(series=self.series, tracer=tracer)
        self.core = RequestCore(self.servable_map, core_runner, on_runtime)
        # Every codec's inference goes through this one interface (engine/data_plane.py).
        # Views and admin calls too: codecs never read the manager or the config themselves.
        lifecycle = engine_lifecycle(self.manager, self.live_config, self.repository)
        self.data_plane = InProcessDataPlane(
            self.core, plan_options(self.options), lifecycle, EXAMPLE_PLANS
        )
        if batches(self.runner):
            self.metrics.watch_queue_depths(self.runner.queue_depths)
        exported = None if self.options.metrics_names == "tfserving" else self.metrics_registry
        extra = self.tf_metrics.exposition if self.tf_metrics is not None else None
        self.exposition = local_exposition(exported, extra)  # every process's requests
        self.protocols: ProtocolServers | None = None  # --workers=0: this process serves
        self.frontends: FrontendSupervisor | None = None  # --workers=N: N processes do
        self.endpoint: EngineEndpoint | None = None
        self.endpoint_dir = ""
        self.http_port = 0

    def _init_transport(self) -> None:
        """Refused TF Serving flags and TensorFlow's settings (threads, Sessions); TLS and
        gRPC's options are the protocol servers' (ProtocolServers checks them)."""
        refused = refused_flags(self.options)
        if refused:
            raise ConfigurationError("; ".join(refused))
        # The Session ConfigProto, batching, tags, warm-up: flags or --platform_config_file
        self.tf_settings = tensorflow_settings(self.options)
        log.info(
            "tensorflow_session_config",
            source=self.tf_settings.source,
            session_config=session_config_text(self.tf_settings.session_config),
            xla_compilation="allowed" if apply_xla_flags(self.options) else "disabled",
        )

    def _storage(self, model: ModelConfig) -> VersionStorage:
        """Where a model's versions are: local folders, or an object store (s3://, gs://, ...)."""
        markers = marker_files(model.platform)
        if not is_remote(model.base_path):
            return LocalStorage(model.base_path, markers)
        try:
            store = ObjectStore(model.base_path)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"cannot open {redact(model.base_path)}: {exc}; for s3:// install "
                "pyserving[s3], for gs:// pyserving[gcs]"
            ) from None
        if self.cache is None:
            cache_dir = self.options.model_cache_dir or tempfile.mkdtemp(prefix="pyserving-cache-")
            self.cache = VersionCache(cache_dir, self.options.model_cache_max_bytes)
            self.bus.subscribe(CacheEvictor(self.cache))
        return RemoteStorage(model.name, store, self.cache, markers)

    async def start(self) -> None:
        self.bus.start()
        self.bus.publish(
            ServerStarted(
                pyserving_version=pyserving.__version__,
                flags=dict(sorted(dataclasses.asdict(self.options).items())),
                models=tuple(self.config.names),
                config_digest=config_digest(self.config),
            )
        )
        if self.promotion is not None:  # before any label is set: replay must know too
            self.bus.publish(PromotionGatesSet(gates=self.promotion.gated()))
        if self.options.workers > 0:
            self._start_engine()
        else:
            self.protocols = ProtocolServers(
                self.options,
                self.data_plane,
                self.envelope,
                self.request_log,
                self.exposition,
                profiler=True,
            )
            await self.protocols.start()
            self.port, self.http_port = self.protocols.port, self.protocols.http_port
        # What start-up made (TensorFlow's modules: ~330k tracked objects) lives as long as
        # the process: out of the cyclic collector's sight, a full collection no longer
        # scans it all (tens of ms on the loop, every ~80k objects that outlived a young
        # collection, which requests in flight do). Frozen before the first version loads,
        # so an unloaded version's graph objects stay collectable.
        gc.freeze()
        self.live_config.start()
        if self.frontends is not None:  # they start while the models load
            await self.frontends.start(timeout_s=FRONTEND_START_TIMEOUT_S)
        if self.repository is not None and self.options.model_repository_load_all:
            loaded = await asyncio.to_thread(self.repository.load_all)
            log.info("model_repository_loaded_all", models=loaded)

    async def stop(self, reason: str) -> None:
        """Graceful stop: refuse new work, finish what is in flight, unload, flush the log."""
        log.info("server_stopping", reason=reason)
        self.data_plane.server_health.shutting_down = True  # every process's readiness
        self.live_config.stop()
        grace = self.options.shutdown_grace_seconds
        if self.protocols is not None:
            await self.protocols.drain(grace)
        if self.frontends is not None:  # each drains; the engine answers until they exit
            await self.frontends.stop(grace)
        if self.endpoint is not None:
            await self.endpoint.close()
            shutil.rmtree(self.endpoint_dir, ignore_errors=True)
        await asyncio.to_thread(self.request_log.close)  # what the answered requests queued
        self.bus.publish(ShutdownRequested(reason=reason))
        await asyncio.to_thread(self._wait_unloaded, self.options.shutdown_grace_seconds + 30)
        self.runner.close()
        self.manager.close()
        self.bus.wait_idle(timeout=10)
        self.bus.publish(ServerStopped(reason=reason))  # replay: every decision is recorded
        self.bus.stop()
        if self.event_log is not None:
            self.event_log.close()
        if self.tracing is not None:
            self.tracing.shutdown()  # exports the spans still buffered (the last unloads)
        if self.cache is not None and not self.options.model_cache_dir:
            shutil.rmtree(self.cache.root, ignore_errors=True)  # our own temporary folder
        if self.protocols is not None:
            await self.protocols.close()
        log.info("server_stopped")

    def _start_engine(self) -> None:
        """`--workers=N`: serve the data plane to N front-end processes, and start them."""
        self.endpoint_dir = tempfile.mkdtemp(prefix="pyserving-engine-")
        address = f"ipc://{self.endpoint_dir}/data-plane"
        generation = Generation(lambda: self.live_config.current)
        self.frontends = FrontendSupervisor(
            self.options.workers,
            lambda worker: frontend_args(self.options, address, worker, os.getpid()),
            self.bus.publish,
            self.options.frontend_liveness_timeout_seconds,
        )
        services = engine_services(
            SeriesCache(self.series).observe,
            self.exposition,
            self._request_logs,
            generation,
            self.frontends.ready,
            self.metrics.request_log_written,
            self.metrics.request_log_drop,
        )
        serving = Generation(lambda: self.servable_map.snapshot)
        tracer = None if self.tracing is None else self.tracing.requests
        handler = engine_handler(self.data_plane, services, generation, serving, tracer)
        self.endpoint = EngineEndpoint(address, handler)
        self.endpoint.start()
        self.port, self.http_port = self.options.port, self.options.rest_api_port
        log.info("engine_serving", address=address, workers=self.options.workers)
        if self.options.enable_profiler:  # TF Serving's default: say where it went
            log.info(
                "profiler_not_served",
                reason="TensorFlow runs in the engine, which serves no gRPC",
                hint="--workers=0 serves TensorFlow's profiler on the serving port",
            )

    def _request_logs(self) -> list[tuple[str, float, str]]:
        """Each logged model's sampling rate and file prefix, in the config in force."""
        return [
            (m.name, m.request_log.sampling_rate, m.request_log.filename_prefix)
            for m in self.live_config.current.models
            if m.request_log is not None
        ]

    def _wait_unloaded(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.bus.wait_idle(timeout=1)
            states = self.manager.states().values()
            if all(s in ("end", "error") for s in states):
                return
            time.sleep(0.05)
        log.error(
            "shutdown_timed_out",
            states={f"{m}/{v}": s for (m, v), s in self.manager.states().items()},
        )


async def serve(options: ServerOptions) -> int:
    server = ModelServer(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(name: str) -> None:
        received.append(name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    await server.start()
    await stop.wait()
    await server.stop(reason=f"received {received[0] if received else 'stop'}")
    return 0
