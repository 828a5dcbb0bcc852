"""The composition root: builds the bus, manager, sources and gRPC server, runs, and stops.

Everything stateful is created here and passed down; nothing below keeps global state.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

import pyserving
from pyserving.adapters.batching_config import BatchingConfigError, load_batching_options
from pyserving.adapters.event_log import EventLogWriter, last_sequence
from pyserving.adapters.lifecycle_log import log_event
from pyserving.adapters.loaders.tensorflow_loader import TensorFlowLoader
from pyserving.adapters.sources.file_system import FileSystemSource
from pyserving.api.health import HealthService
from pyserving.api.model_service import ModelService
from pyserving.api.prediction_service import PredictionService
from pyserving.engine.batching import BatchingRunner
from pyserving.engine.bus import EventBus
from pyserving.engine.events import Event, ServerStarted, ShutdownRequested
from pyserving.engine.manager import Manager, RetryPolicy
from pyserving.engine.policy import POLICIES
from pyserving.engine.runner import DirectRunner, Runner
from pyserving.engine.servable_map import ServableMap

log = structlog.get_logger("pyserving.server")


class StartupError(Exception):
    """The server cannot start as configured; the message says what to change."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str


def models_from_flags(options: argparse.Namespace) -> list[ModelConfig]:
    if not options.model_base_path:
        raise StartupError(
            "no model to serve: give --model_base_path=/path/to/model (a folder of numbered "
            "version folders) and --model_name=NAME"
        )
    return [ModelConfig(options.model_name, options.model_base_path)]


def runner_from_flags(options: argparse.Namespace, publish: Callable[[Event], Any]) -> Runner:
    """The batching scheduler with --enable_batching, else one model call per request."""
    if not options.enable_batching:
        if options.batching_parameters_file:
            raise StartupError(
                f"--batching_parameters_file={options.batching_parameters_file} is given but "
                "batching is off: add --enable_batching, or drop the file"
            )
        if options.batching_idle_micros:
            raise StartupError(
                "--batching_idle_micros is given but batching is off: add --enable_batching"
            )
        return DirectRunner(options.num_request_threads)
    try:
        batching = load_batching_options(options.batching_parameters_file)
    except BatchingConfigError as exc:
        raise StartupError(str(exc)) from None
    batching = dataclasses.replace(batching, idle_micros=options.batching_idle_micros)
    try:
        batching.validate()
    except ValueError as exc:
        raise StartupError(f"--batching_idle_micros: {exc}") from None
    log.info("batching_enabled", **dataclasses.asdict(batching))
    return BatchingRunner(batching, publish=publish)


class ModelServer:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.models = models_from_flags(options)
        first_seq = last_sequence(options.event_log) + 1 if options.event_log else 1
        self.bus = EventBus(first_seq=first_seq)
        self.runner = runner_from_flags(options, self.bus.publish)
        self.servable_map = ServableMap()
        self.manager = Manager(
            publish=self.bus.publish,
            loader=TensorFlowLoader(tags=options.saved_model_tags.split(",")),
            servable_map=self.servable_map,
            policy=POLICIES[options.aspired_version_policy](),
            retry=RetryPolicy(
                max_num_load_retries=options.max_num_load_retries,
                load_retry_interval_s=options.load_retry_interval_micros / 1e6,
            ),
            num_load_threads=max(1, options.num_load_threads),
            num_unload_threads=max(1, options.num_unload_threads),
        )
        self.event_log = EventLogWriter(options.event_log) if options.event_log else None
        self.bus.subscribe(self.manager.handle)
        self.bus.subscribe(log_event)
        if self.event_log is not None:
            self.bus.subscribe(self.event_log)
        self.sources = [
            FileSystemSource(
                m.name,
                m.base_path,
                self.bus.publish,
                poll_wait_s=options.file_system_poll_wait_seconds,
            )
            for m in self.models
        ]
        self.health = HealthService(self.servable_map, lambda: [m.name for m in self.models])
        self.grpc_server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.bus.start()
        self.bus.publish(
            ServerStarted(
                pyserving_version=pyserving.__version__,
                flags={k: v for k, v in sorted(vars(self.options).items()) if k != "func"},
                models=tuple(m.name for m in self.models),
            )
        )
        max_bytes = self.options.grpc_max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
            ]
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.servable_map, self.runner, max_elements=max_bytes), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.manager, self.servable_map), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
                model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        address = f"0.0.0.0:{self.options.port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen on {address} ({exc}): is another server using --port="
                f"{self.options.port}? Stop it or choose another port"
            ) from None
        await server.start()
        self.grpc_server = server
        log.info("grpc_server_listening", address=f"0.0.0.0:{self.port}")
        for source in self.sources:
            source.start()

    async def stop(self, reason: str) -> None:
        """Graceful stop: refuse new work, finish what is in flight, unload, flush the log."""
        log.info("server_stopping", reason=reason)
        self.health.shutting_down = True
        for source in self.sources:
            source.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=self.options.shutdown_grace_seconds)
        self.bus.publish(ShutdownRequested(reason=reason))
        await asyncio.to_thread(self._wait_unloaded, self.options.shutdown_grace_seconds + 30)
        self.runner.close()
        self.manager.close()
        self.bus.wait_idle(timeout=10)
        self.bus.stop()
        if self.event_log is not None:
            self.event_log.close()
        log.info("server_stopped")

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


async def serve(options: argparse.Namespace) -> int:
    server = ModelServer(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (received.append(s.name), stop.set()))
    await server.start()
    await stop.wait()
    await server.stop(reason=f"received {received[0] if received else 'stop'}")
    return 0
