"""Every flag of TF Serving's `tensorflow_model_server`, and what pyserving does with it.

Scripts and manifests written for `tensorflow_model_server` must start pyserving
unchanged, and no flag may be silently ignored. Each TF Serving flag (main.cc) is in
`TF_SERVING_FLAGS` with one of:

- implemented: TF Serving's meaning (and default, unless the note says otherwise);
- accepted: the flag only tunes something pyserving does not have, so every value
  gives TF Serving's observable behaviour; the note says why;
- refused: asking for the feature (a value other than the default) stops start-up
  with a message naming the flag; leaving it at its default is fine.

This module registers the flags the rest of `api/flags.py` does not (REST, TLS and
limits, TensorFlow threads, compatibility), and checks refused ones at start-up.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pyserving

IMPLEMENTED, ACCEPTED, REFUSED = "implemented", "accepted", "refused"


@dataclass(frozen=True)
class FlagSupport:
    status: str
    note: str
    refuse_if: Callable[[Any], bool] | None = None  # for refused flags: the asking values


def _truthy(value: Any) -> bool:
    return bool(value)


TF_SERVING_FLAGS: dict[str, FlagSupport] = {
    "port": FlagSupport(IMPLEMENTED, "gRPC port"),
    "grpc_socket_path": FlagSupport(IMPLEMENTED, "also listen on this Unix socket"),
    "rest_api_port": FlagSupport(IMPLEMENTED, "REST API, metrics and probes; 0 = off"),
    "rest_api_num_threads": FlagSupport(
        IMPLEMENTED,
        "REST requests processed at once (others wait); the HTTP server itself is async",
    ),
    "rest_api_timeout_in_ms": FlagSupport(IMPLEMENTED, "deadline of each REST request"),
    "rest_api_enable_cors_support": FlagSupport(IMPLEMENTED, "TF Serving's CORS headers"),
    "enable_batching": FlagSupport(IMPLEMENTED, "merge concurrent requests (engine/batching)"),
    "batching_parameters_file": FlagSupport(IMPLEMENTED, "a BatchingParameters text proto"),
    "enable_per_model_batching_parameters": FlagSupport(
        REFUSED,
        "per-model batching_params.pbtxt files are not read; use --batching_parameters_file",
        _truthy,
    ),
    "allow_version_labels_for_unavailable_models": FlagSupport(
        IMPLEMENTED, "labels may name versions that are not available yet"
    ),
    "model_config_file": FlagSupport(IMPLEMENTED, "a ModelServerConfig text proto"),
    "model_config_file_poll_wait_seconds": FlagSupport(
        IMPLEMENTED, "re-read --model_config_file and apply what changed"
    ),
    "model_name": FlagSupport(IMPLEMENTED, "name clients use"),
    "model_base_path": FlagSupport(IMPLEMENTED, "folder or object-store URL of versions"),
    "num_load_threads": FlagSupport(IMPLEMENTED, "load pool size"),
    "num_unload_threads": FlagSupport(IMPLEMENTED, "unload pool size"),
    "max_num_load_retries": FlagSupport(IMPLEMENTED, "retries of a failed load"),
    "load_retry_interval_micros": FlagSupport(IMPLEMENTED, "wait between retries"),
    "file_system_poll_wait_seconds": FlagSupport(IMPLEMENTED, "poll period"),
    "flush_filesystem_caches": FlagSupport(
        ACCEPTED,
        "TF's file-system caches are not kept after a load here (remote versions are "
        "downloaded to --model_cache_dir), so there is nothing to flush",
    ),
    "tensorflow_session_parallelism": FlagSupport(
        IMPLEMENTED, "each Session's ConfigProto: intra- and inter-op threads, both"
    ),
    "tensorflow_session_config_file": FlagSupport(
        REFUSED, "a ConfigProto file is not read", lambda v: bool(v)
    ),
    "tensorflow_intra_op_parallelism": FlagSupport(IMPLEMENTED, "each Session's ConfigProto"),
    "tensorflow_inter_op_parallelism": FlagSupport(IMPLEMENTED, "each Session's ConfigProto"),
    "use_alts_credentials": FlagSupport(REFUSED, "ALTS needs Google Cloud", _truthy),
    "ssl_config_file": FlagSupport(IMPLEMENTED, "TLS for gRPC, and HTTPS on the REST port"),
    "platform_config_file": FlagSupport(
        REFUSED, "use --model_platform and the model config instead", lambda v: bool(v)
    ),
    "per_process_gpu_memory_fraction": FlagSupport(
        REFUSED, "GPU memory is not partitioned", lambda v: float(v) != 0.0
    ),
    "saved_model_tags": FlagSupport(IMPLEMENTED, "MetaGraph tags"),
    "grpc_channel_arguments": FlagSupport(IMPLEMENTED, "key=value,... gRPC server options"),
    "grpc_max_threads": FlagSupport(
        IMPLEMENTED,
        "gRPC requests handled at once, more get RESOURCE_EXHAUSTED as from TF Serving's "
        "exhausted pool; default 0 = no limit (TF Serving: 4 per CPU), since requests are "
        "handled on the event loop, not on gRPC threads",
    ),
    "enable_model_warmup": FlagSupport(IMPLEMENTED, "replay warm-up records"),
    "num_request_iterations_for_warmup": FlagSupport(IMPLEMENTED, "warm-up repetitions"),
    "version": FlagSupport(IMPLEMENTED, "print the version and exit 0"),
    "monitoring_config_file": FlagSupport(IMPLEMENTED, "MonitoringConfig text proto"),
    "remove_unused_fields_from_bundle_metagraph": FlagSupport(
        ACCEPTED, "only the signatures are kept from the MetaGraph either way"
    ),
    "prefer_tflite_model": FlagSupport(
        IMPLEMENTED, "serve a version folder's model.tflite instead of its SavedModel"
    ),
    "use_tflite_model": FlagSupport(
        IMPLEMENTED,
        "older releases' flag: serve model.tflite from every version folder, no fallback",
    ),
    "num_tflite_pools": FlagSupport(IMPLEMENTED, "TFLite interpreters per version"),
    "num_tflite_interpreters_per_pool": FlagSupport(
        IMPLEMENTED, "above 1, a large batch is split across the interpreters"
    ),
    "enable_signature_method_name_check": FlagSupport(IMPLEMENTED, "Classify/Regress check"),
    "xla_cpu_compilation_enabled": FlagSupport(REFUSED, "XLA:CPU JIT is not wired", _truthy),
    "enable_profiler": FlagSupport(
        IMPLEMENTED, "tensorflow.ProfilerService on the gRPC port (api/profiler_service)"
    ),
    "thread_pool_factory_config_file": FlagSupport(
        REFUSED, "custom thread pools are not supported", lambda v: bool(v)
    ),
    "enable_grpc_healthcheck_service": FlagSupport(
        ACCEPTED, "grpc.health.v1.Health is always served"
    ),
}


def _cpus() -> int:
    return os.cpu_count() or 1


def _parse_bool(text: str) -> bool:
    from pyserving.api.flags import parse_bool  # flags.py imports this module

    return parse_bool(text)


def _add_bool(group: argparse._ArgumentGroup, name: str, default: bool, help: str) -> None:
    group.add_argument(
        name, type=_parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
    )


def add_compat_flags(parser: argparse.ArgumentParser) -> None:
    """The REST, TLS/limits, TensorFlow-thread and compatibility groups of `serve --help`."""
    rest = parser.add_argument_group("REST API (on --rest_api_port)")
    rest.add_argument(
        "--rest_api_num_threads",
        type=int,
        default=4 * _cpus(),
        metavar="N",
        help="REST requests processed at once; more wait their turn (default: 4 per CPU)",
    )
    rest.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=30000,
        metavar="MS",
        help="deadline of each REST request; past it the reply is 504 DEADLINE_EXCEEDED; "
        "0 = none (default: %(default)s)",
    )
    _add_bool(
        rest,
        "--rest_api_enable_cors_support",
        False,
        "add Access-Control-Allow-* headers and answer OPTIONS preflights (default: false)",
    )

    tls = parser.add_argument_group("TLS, sockets and limits")
    tls.add_argument(
        "--ssl_config_file",
        default="",
        metavar="FILE",
        help="TF Serving SSLConfig text proto (server_key, server_cert, custom_ca, "
        "client_verify: the PEM text itself): TLS on the gRPC port and the Unix socket, and "
        "HTTPS with the same certificate on --rest_api_port",
    )
    tls.add_argument(
        "--grpc_socket_path",
        default="",
        metavar="PATH",
        help="also serve gRPC on this Unix socket (unix:PATH)",
    )
    tls.add_argument(
        "--grpc_channel_arguments",
        default="",
        metavar="K=V,...",
        help="gRPC server options, e.g. grpc.max_connection_age_ms=60000; integer values are "
        "passed as integers, others as strings (as TF Serving)",
    )
    tls.add_argument(
        "--grpc_max_threads",
        type=int,
        default=0,
        metavar="N",
        help="gRPC requests handled at once; more are refused with RESOURCE_EXHAUSTED "
        "(TF Serving's exhausted thread pool); 0 = no limit (default: 0)",
    )
    _add_bool(
        tls,
        "--enable_grpc_healthcheck_service",
        False,
        "accepted for TF Serving scripts: grpc.health.v1.Health is always on",
    )

    threads = parser.add_argument_group("TensorFlow threads (0 = TensorFlow decides)")
    threads.add_argument(
        "--tensorflow_session_parallelism",
        type=int,
        default=0,
        metavar="N",
        help="threads for both intra- and inter-op parallelism (default: 0)",
    )
    threads.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        metavar="N",
        help="threads that parallelise one op (default: 0)",
    )
    threads.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        metavar="N",
        help="threads that run independent ops at once (default: 0)",
    )

    compat = parser.add_argument_group(
        "TF Serving compatibility (accepted with no effect here, or refused when asking "
        "for a feature pyserving lacks)"
    )
    _add_bool(compat, "--version", False, "print the version and exit")
    _add_bool(
        compat, "--flush_filesystem_caches", True, TF_SERVING_FLAGS["flush_filesystem_caches"].note
    )
    _add_bool(
        compat,
        "--remove_unused_fields_from_bundle_metagraph",
        True,
        TF_SERVING_FLAGS["remove_unused_fields_from_bundle_metagraph"].note,
    )
    add_tflite_and_profiler_flags(parser)
    for name in (
        "use_alts_credentials",
        "xla_cpu_compilation_enabled",
        "enable_per_model_batching_parameters",
    ):
        _add_bool(compat, f"--{name}", False, f"refused when true: {TF_SERVING_FLAGS[name].note}")
    for name in (
        "tensorflow_session_config_file",
        "platform_config_file",
        "thread_pool_factory_config_file",
    ):
        compat.add_argument(
            f"--{name}",
            default="",
            metavar="FILE",
            help=f"refused when given: {TF_SERVING_FLAGS[name].note}",
        )
    compat.add_argument(
        "--per_process_gpu_memory_fraction",
        type=float,
        default=0.0,
        metavar="F",
        help=f"refused unless 0: {TF_SERVING_FLAGS['per_process_gpu_memory_fraction'].note}",
    )


def add_tflite_and_profiler_flags(parser: argparse.ArgumentParser) -> None:
    """TF Serving's TFLite flags (server.h defaults) and its profiler switch (default on)."""
    group = parser.add_argument_group("TensorFlow Lite models and the profiler")
    _add_bool(
        group,
        "--prefer_tflite_model",
        False,
        "serve model.tflite where a version folder has one, else its SavedModel (default: false)",
    )
    _add_bool(
        group,
        "--use_tflite_model",
        False,
        "older TF Serving releases' flag: serve model.tflite from every version folder; "
        "a folder without one fails to load (default: false)",
    )
    group.add_argument(
        "--num_tflite_pools",
        type=int,
        default=_cpus(),
        metavar="N",
        help="TFLite interpreters per version, each single-threaded (default: one per CPU)",
    )
    group.add_argument(
        "--num_tflite_interpreters_per_pool",
        type=int,
        default=1,
        metavar="N",
        help="above 1, a request larger than ceil(500/N) rows is split across the "
        "interpreters (default: %(default)s)",
    )
    _add_bool(
        group,
        "--enable_profiler",
        True,
        "serve tensorflow.ProfilerService on the gRPC port, for TensorBoard's capture "
        "(default: true)",
    )


def refused_flags(options: argparse.Namespace) -> list[str]:
    """A message for each flag asking for something pyserving does not support."""
    messages = []
    for name, support in TF_SERVING_FLAGS.items():
        if support.status != REFUSED or not hasattr(options, name):
            continue
        value = getattr(options, name)
        assert support.refuse_if is not None
        if support.refuse_if(value):
            messages.append(
                f"--{name}={value} is not supported by pyserving ({support.note}); remove it"
            )
    return messages


def version_text() -> str:
    """`tensorflow_model_server --version`: TF Serving prints its and TensorFlow's versions."""
    try:
        tensorflow = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tensorflow = "not installed"
    return (
        f"pyserving: {pyserving.__version__} (TensorFlow ModelServer compatible)\n"
        f"TensorFlow Library: {tensorflow}"
    )


class FlagError(ValueError):
    """Flags that cannot be used together or parsed; the message names them."""


def tensorflow_threads(options: argparse.Namespace) -> tuple[int, int]:
    """(intra, inter) op threads from TF Serving's three flags, as its server.cc combines them."""
    session = options.tensorflow_session_parallelism
    intra = options.tensorflow_intra_op_parallelism
    inter = options.tensorflow_inter_op_parallelism
    if intra > 0 and inter > 0 and session > 0:
        raise FlagError(
            "Either configure --tensorflow_session_parallelism or "
            "(--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all."
        )
    if intra > 0 or inter > 0:
        return intra, inter
    return session, session


def grpc_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`--grpc_channel_arguments=k=v,k2=v2`: int32 values as ints, others as strings."""
    arguments: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FlagError(
                f"--grpc_channel_arguments: {item!r} is not key=value; e.g. "
                "--grpc_channel_arguments=grpc.max_connection_age_ms=60000"
            )
        try:
            number = int(value)
        except ValueError:
            arguments.append((key, value))
            continue
        arguments.append((key, number) if -(1 << 31) <= number < (1 << 31) else (key, value))
    return arguments
