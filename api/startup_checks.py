"""What `serve` checks before TensorFlow is imported, so a mistake is reported in a blink.

Importing TensorFlow takes seconds (3 s on an idle machine, 11 s under load), and a server
that imports it before reading its flags makes a newcomer wait that long to learn that
no model was named or that the port is taken. Everything here reads only flags, config
files and sockets; nothing imports TensorFlow, and `tests/test_startup_checks.py` keeps
it so. api/server.py calls the same functions again when it builds the server (cheap),
so there is one copy of each rule and its message.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from typing import TYPE_CHECKING

from pyserving.adapters.batching_config import load_batching_options
from pyserving.adapters.frontend_supervisor import HEARTBEAT_S
from pyserving.adapters.model_config import ServerConfig, read_file, single_model
from pyserving.adapters.promotion_config import load_promotion_gates
from pyserving.api.envelope.restricted_api import parse_restricted_api
from pyserving.api.flag_compat import (
    check_credentials,
    grpc_channel_arguments,
    refused_flags,
    tensorflow_threads,
)
from pyserving.api.monitoring_config import load_monitoring_config
from pyserving.api.tls import load_ssl_config
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import ConfigurationError

if TYPE_CHECKING:  # annotations only
    from pyserving.api.server_options import ServerOptions

__all__ = [
    "batching_from_flags",
    "check_before_tensorflow",
    "check_distinct_ports",
    "check_model_repository",
    "check_request_log_flags",
    "models_from_flags",
    "with_idle",
]


def models_from_flags(options: ServerOptions) -> ServerConfig:
    """--model_config_file when given (as TF Serving, it overrides --model_name/_base_path)."""
    if options.model_config_file:
        return read_file(options.model_config_file)
    if not options.model_base_path:
        if options.model_repository:
            return ServerConfig(())  # nothing serves until the repository API loads a model
        raise ConfigurationError(
            "no model to serve: give --model_base_path=/path/to/model (a folder of numbered "
            "version folders) and --model_name=NAME, or --model_config_file=FILE, or "
            "--model_repository=DIR and load models through the repository API"
        )
    return single_model(options.model_name, options.model_base_path, options.model_platform)


def check_model_repository(options: ServerOptions) -> None:
    if not options.model_repository:
        if options.model_repository_load_all:
            raise ConfigurationError(
                "--model_repository_load_all needs --model_repository=DIR, the folder to load"
            )
        return
    if not os.path.isdir(options.model_repository):
        raise ConfigurationError(
            f"--model_repository={options.model_repository} is not a folder: give the folder "
            "holding one folder per model (each with numbered version folders)"
        )


def check_request_log_flags(options: ServerOptions) -> None:
    if options.request_log_max_bytes <= 0:
        raise ConfigurationError(
            "--request_log_max_bytes must be positive (a file's size in bytes)"
        )
    if options.request_log_max_files < 0:
        raise ConfigurationError("--request_log_max_files must be 0 (keep all) or more")
    if options.request_log_queue_size < 1:
        raise ConfigurationError("--request_log_queue_size must be at least 1")


def batching_from_flags(options: ServerOptions) -> BatchingOptions | None:
    """The batching options with --enable_batching (validated), None without."""
    if not options.enable_batching:
        if options.batching_parameters_file:
            raise ConfigurationError(
                f"--batching_parameters_file={options.batching_parameters_file} is given but "
                "batching is off: add --enable_batching, or drop the file"
            )
        if options.batching_idle_micros:
            raise ConfigurationError(
                "--batching_idle_micros is given but batching is off: add --enable_batching"
            )
        return None
    batching = load_batching_options(options.batching_parameters_file)
    return with_idle(batching, options.batching_idle_micros)


def with_idle(batching: BatchingOptions, idle_micros: int) -> BatchingOptions:
    """`batching` with --batching_idle_micros, checked together."""
    batching = dataclasses.replace(batching, idle_micros=idle_micros)
    try:
        batching.validate()
    except ValueError as exc:
        raise ConfigurationError(f"--batching_idle_micros: {exc}") from None
    return batching


def check_distinct_ports(options: ServerOptions) -> None:
    rest_port = options.rest_api_port
    if rest_port and rest_port == options.port:
        raise ConfigurationError(
            f"--rest_api_port={rest_port} is also --port: give the HTTP server its own port"
        )


def check_workers(options: ServerOptions) -> None:
    """Front-end processes share the server's ports, so each port must be a fixed one."""
    if options.workers < 0:
        raise ConfigurationError(f"--workers={options.workers}: give 0 (one process) or more")
    if options.workers and options.port == 0:
        raise ConfigurationError(
            "--workers needs a fixed --port: every front-end listens on the same one "
            "(a port the kernel picks would differ in each); give --port=PORT"
        )
    timeout_s = options.frontend_liveness_timeout_seconds
    if timeout_s and timeout_s < 2 * HEARTBEAT_S:
        raise ConfigurationError(
            f"--frontend_liveness_timeout_seconds={timeout_s:g}: a front-end says it is alive "
            f"every {HEARTBEAT_S:g} s, so give 0 (never replace a silent one) or at least "
            f"{2 * HEARTBEAT_S:g}"
        )


def check_port_free(port: int, flag: str, reuse_port: bool = False) -> None:
    """A listening socket already on `port` stops start-up now, in pyserving's words, rather
    than after TensorFlow's import with grpc's raw add_port line. A port 0 (the kernel
    picks) or one shared on purpose (grpc.so_reuseport=1) is not checked."""
    if port == 0 or reuse_port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: SO_REUSEADDR, so a recent connection's TIME_WAIT is no
        # conflict; only a listener is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} is already in use (--{flag}={port}): is another server "
                    f"running? Stop it, or choose another port with --{flag}"
                ) from None
            if exc.errno == errno.EACCES:
                raise ConfigurationError(
                    f"port {port} needs privileges this user lacks (--{flag}={port}): "
                    "choose a port above 1023"
                ) from None
            # Anything else (say, a host without IPv4) is left to the server's own bind.


def check_before_tensorflow(options: ServerOptions) -> None:
    """Every check of flags, config files and ports that needs no TensorFlow; raises
    ConfigurationError with the first problem found."""
    refused = refused_flags(options)
    if refused:
        raise ConfigurationError("; ".join(refused))
    tensorflow_threads(options)
    channel_arguments = dict(grpc_channel_arguments(options.grpc_channel_arguments))
    check_credentials(options)
    load_ssl_config(options.ssl_config_file)
    parse_restricted_api(options.restricted_api)
    load_monitoring_config(options.monitoring_config_file)
    load_promotion_gates(options.promotion_gates_file)
    models_from_flags(options)
    check_model_repository(options)
    batching_from_flags(options)
    check_request_log_flags(options)
    check_distinct_ports(options)
    check_workers(options)
    check_port_free(options.port, "port", bool(channel_arguments.get("grpc.so_reuseport", 0)))
    check_port_free(options.rest_api_port, "rest_api_port")
