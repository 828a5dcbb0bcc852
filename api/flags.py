"""The `serve` flags as one declarative table: TF Serving's `tensorflow_model_server` names,
meanings and defaults, pyserving's own beside them, and what pyserving does with each.

From `FLAGS` come the argparse parser (`add_serve_flags`, grouped as `serve --help` shows
them), the frozen `ServerOptions` (api/server_options.py) the CLI builds once from them,
and `flag_compat.TF_SERVING_FLAGS` (each TF Serving flag's status). A TF Serving flag is:

- implemented: TF Serving's meaning (and default, unless the note says otherwise);
- accepted: it only tunes something pyserving does not have, so every value gives TF
  Serving's observable behaviour; the note says why;
- refused: asking for the feature (a value other than the default) stops start-up with a
  message naming the flag; leaving it at its default is fine.

Flags are accepted as `--name=value` or `--name value`; booleans also as a bare
`--name`, `--name=true|false|1|0`, as absl parses them for TF Serving.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyserving.adapters.loaders.platforms import KNOWN_PLATFORMS, TENSORFLOW
from pyserving.adapters.tfserving_metrics import METRICS_NAMES
from pyserving.api.server_options import ServerOptions
from pyserving.api.serving_loop import EVENT_LOOPS

__all__ = ["FLAGS", "Flag", "FlagSupport", "ServerOptions", "add_serve_flags", "server_options"]

IMPLEMENTED, ACCEPTED, REFUSED = "implemented", "accepted", "refused"


@dataclass(frozen=True)
class FlagSupport:
    status: str
    note: str
    refuse_if: Callable[[Any], bool] | None = None  # for refused flags: the asking values


def _truthy(value: Any) -> bool:
    return bool(value)


def _cpus() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Flag:
    """One row of the table: the flag, its type and default, its help, its TF Serving status
    (None: pyserving's own)."""

    name: str
    type: type
    default: Any
    group: str
    help: str
    tf_serving: FlagSupport | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


NET = "network"
MODEL = "model (one model; see --model_config_file for many)"
MODELS = "models (many, from a config file)"
LIFE = "lifecycle"
PLATFORMS = "platforms, warm-up and request checks"
BATCHING = "batching"
OBSERVABILITY = "observability"
REST = "REST API (on --rest_api_port)"
TLS = "TLS, sockets and limits"
THREADS = "TensorFlow threads (0 = TensorFlow decides)"
TFLITE = "TensorFlow Lite models and the profiler"
SESSIONS = "TensorFlow Sessions (docs/tf_serving_compat.md)"
COMPAT = (
    "TF Serving compatibility (accepted with no effect here, or refused when asking for a "
    "feature pyserving lacks)"
)


def _implemented(note: str) -> FlagSupport:
    return FlagSupport(IMPLEMENTED, note)


_FLUSH = FlagSupport(
    ACCEPTED,
    "TF's file-system caches are not kept after a load here (remote versions are "
    "downloaded to --model_cache_dir), so there is nothing to flush",
)
_REMOVE_UNUSED = FlagSupport(ACCEPTED, "only the signatures are kept from the MetaGraph either way")


def _refused_file(name: str, note: str) -> Flag:
    return Flag(
        name,
        str,
        "",
        COMPAT,
        f"refused when given: {note}",
        FlagSupport(REFUSED, note, _truthy),
        metavar="FILE",
    )


FLAGS: tuple[Flag, ...] = (
    # ------------------------------------------------------------------ network
    Flag("port", int, 8500, NET, "gRPC port (default: %(default)s)", _implemented("gRPC port")),
    Flag(
        "grpc_max_message_bytes",
        int,
        64 * 1024 * 1024,
        NET,
        "largest gRPC message and REST body in bytes; larger requests are refused unread "
        "with RESOURCE_EXHAUSTED / HTTP 413 (default: 64 MiB)",
    ),
    Flag(
        "max_request_tensor_bytes",
        int,
        0,
        NET,
        "most bytes one request's decoded tensors may take, all inputs together, counted per "
        "dtype (a string element as 64 bytes plus its length) before anything is allocated; "
        "a request claiming more (e.g. a short TensorProto whose shape repeats its last "
        "value) is refused with RESOURCE_EXHAUSTED / HTTP 429 naming the input; "
        "0 = twice --grpc_max_message_bytes (default: 0)",
        metavar="BYTES",
    ),
    Flag(
        "rest_api_port",
        int,
        0,
        NET,
        "HTTP port for TF Serving's REST API (/v1/models/...), "
        "/monitoring/prometheus/metrics (also at /metrics), /healthz and /readyz; 0 turns the "
        "HTTP server off "
        "(default: 0)",
        _implemented("REST API, metrics and probes; 0 = off"),
    ),
    # ------------------------------------------------------------------ one model
    Flag(
        "model_name",
        str,
        "default",
        MODEL,
        "name clients use in model_spec",
        _implemented("name clients use"),
    ),
    Flag(
        "model_base_path",
        str,
        "",
        MODEL,
        "folder holding numbered version folders (1, 2, ...) of the model",
        _implemented("folder or object-store URL of versions"),
    ),
    Flag(
        "file_system_poll_wait_seconds",
        float,
        1.0,
        MODEL,
        "seconds between looks for new versions; 0 looks once (default: %(default)s)",
        _implemented("poll period"),
    ),
    Flag(
        "model_cache_dir",
        str,
        "",
        MODEL,
        "local folder for versions downloaded from object stores (s3://, gs://); "
        "default: a new temporary folder",
    ),
    Flag(
        "model_cache_max_bytes",
        int,
        20 * 1024**3,
        MODEL,
        "most bytes of downloaded versions kept at once (default: 20 GiB)",
    ),
    Flag(
        "saved_model_tags",
        str,
        "serve",
        MODEL,
        "comma-separated MetaGraph tags to load (default: %(default)s)",
        _implemented("MetaGraph tags"),
    ),
    # ------------------------------------------------------------------ many models
    Flag(
        "model_config_file",
        str,
        "",
        MODELS,
        "a ModelServerConfig text proto listing the models (model_config_list { config "
        "{ name base_path model_platform model_version_policy version_labels } ... }); "
        "when given, --model_name and --model_base_path are ignored",
        _implemented("a ModelServerConfig text proto"),
        metavar="FILE",
    ),
    Flag(
        "model_config_file_poll_wait_seconds",
        float,
        0.0,
        MODELS,
        "seconds between re-reads of --model_config_file, applying what changed; a bad "
        "edit is logged and the last good config keeps running. 0 reads it once (default)",
        _implemented("re-read --model_config_file and apply what changed"),
        metavar="SECONDS",
    ),
    Flag(
        "model_repository",
        str,
        "",
        MODELS,
        "pyserving's own: a folder of model folders (each a model's base path with numbered "
        "versions, as Triton's repository), served through the Open Inference Protocol's "
        "model repository API (RepositoryIndex/ModelLoad/ModelUnload, POST /v2/repository/"
        "...): a load adds the model (latest version, platform from its files), an unload "
        "removes it. Alone, nothing serves until loaded; off when not given",
        metavar="DIR",
    ),
    Flag(
        "model_repository_load_all",
        bool,
        False,
        MODELS,
        "pyserving's own: load every model folder of --model_repository at start-up "
        "(default: false)",
    ),
    Flag(
        "allow_version_labels_for_unavailable_models",
        bool,
        False,
        MODELS,
        "move a label to its configured version at once, even before that version is "
        "available (TF Serving's meaning). Default: a label moves only when its version is "
        "available and keeps answering with the old version until then",
        _implemented("labels may name versions that are not available yet"),
    ),
    Flag(
        "promotion_gates_file",
        str,
        "",
        MODELS,
        "pyserving's own: a TOML file of promotion gates per model and label (signature "
        "compatibility, outputs and p99 latency against recorded requests); a gated label "
        "moves to a new version only after its gates pass (docs/rollouts.md)",
        metavar="FILE",
    ),
    # ------------------------------------------------------------------ lifecycle
    Flag(
        "max_num_load_retries",
        int,
        5,
        LIFE,
        "retries of a failed load before the version ends in error (default: %(default)s)",
        _implemented("retries of a failed load"),
    ),
    Flag(
        "load_retry_interval_micros",
        int,
        60_000_000,
        LIFE,
        "wait between load retries in microseconds (default: 60 s)",
        _implemented("wait between retries"),
    ),
    Flag(
        "load_timeout_seconds",
        float,
        0.0,
        LIFE,
        "pyserving's own: a load attempt running longer fails (counted as an attempt, "
        "so retries follow --max_num_load_retries); its thread cannot be stopped, so it is "
        "left to finish and what it loads is discarded. 0 = no limit (default)",
        metavar="SECONDS",
    ),
    Flag(
        "num_load_threads",
        int,
        0,
        LIFE,
        "threads loading versions; 0 loads one at a time, as TF Serving (default: 0)",
        _implemented("load pool size"),
    ),
    Flag(
        "num_unload_threads",
        int,
        0,
        LIFE,
        "threads unloading versions; 0 means one (default: 0)",
        _implemented("unload pool size"),
    ),
    Flag(
        "aspired_version_policy",
        str,
        "availability",
        LIFE,
        "availability: load the new version before unloading the old (TF Serving's "
        "behaviour); resource: unload first, for models that do not fit twice",
        choices=("availability", "resource"),
    ),
    Flag(
        "num_request_threads",
        int,
        max(4, 2 * _cpus()),
        LIFE,
        "threads running model calls for requests (default: 2 per CPU, at least 4)",
    ),
    Flag(
        "event_loop",
        str,
        "asyncio" if sys.platform == "win32" else "uvloop",
        LIFE,
        "the serving loop: uvloop (libuv's, in C; measured 25-40%% less CPU per request in "
        "bench/request_cost.py) or asyncio (the standard library's) (default: %(default)s)",
        choices=EVENT_LOOPS,
    ),
    Flag(
        "workers",
        int,
        0,
        LIFE,
        "front-end processes that serve gRPC and REST on the same ports and hand each "
        "request to this (engine) process: the protocol work then uses as many cores; "
        "0 = one process does everything, best on one or two CPUs (docs/processes.md "
        "says how to choose) (default: %(default)s)",
        metavar="N",
    ),
    Flag(
        "frontend_liveness_timeout_seconds",
        float,
        10.0,
        LIFE,
        "with --workers: a front-end that has not said it is alive (it does every second, "
        "from its event loop) for this long is killed and started again, so a hung one "
        "does not keep taking connections; 0 = never (default: %(default)s)",
        metavar="SECONDS",
    ),
    Flag(
        "shutdown_grace_seconds",
        float,
        30.0,
        LIFE,
        "on SIGTERM, how long in-flight requests may take to finish (default: 30)",
    ),
    # ------------------------------------------------------------------ platforms, warm-up
    Flag(
        "model_platform",
        str,
        TENSORFLOW,
        PLATFORMS,
        "how versions are loaded: tensorflow (SavedModels) or python (a folder with "
        "model.py); default: %(default)s",
        choices=tuple(KNOWN_PLATFORMS),
    ),
    Flag(
        "enable_model_warmup",
        bool,
        True,
        PLATFORMS,
        "run each version's assets.extra/tf_serving_warmup_requests before it serves, "
        "so the first request is not slow (default: true)",
        _implemented("run warm-up records"),
    ),
    Flag(
        "num_request_iterations_for_warmup",
        int,
        1,
        PLATFORMS,
        "times each warm-up record is run (default: %(default)s)",
        _implemented("warm-up repetitions"),
        metavar="N",
    ),
    Flag(
        "enable_signature_method_name_check",
        bool,
        False,
        PLATFORMS,
        "Classify/Regress only on signatures whose method_name says classify/regress; "
        "leave false to serve native TF2 models (default: false)",
        _implemented("Classify/Regress check"),
    ),
    # ------------------------------------------------------------------ batching
    Flag(
        "enable_batching",
        bool,
        False,
        BATCHING,
        "merge concurrent Predict requests for one version and signature into one model "
        "run (default: false)",
        _implemented("merge concurrent requests (engine/batching)"),
    ),
    Flag(
        "batching_parameters_file",
        str,
        "",
        BATCHING,
        "a BatchingParameters text proto, as for tensorflow_model_server (e.g. "
        "'max_batch_size { value: 128 }'); needs --enable_batching. Without it, TF Serving's "
        "defaults apply",
        _implemented("a BatchingParameters text proto"),
        metavar="FILE",
    ),
    Flag(
        "enable_per_model_batching_parameters",
        bool,
        False,
        BATCHING,
        "with --enable_batching, a version folder's batching_params.pbtxt (BatchingParameters) "
        "batches that version instead of --batching_parameters_file, whose thread pool "
        "settings still apply; a version without the file is not batched (default: false)",
        _implemented("a version's batching_params.pbtxt in place of the server-wide ones"),
    ),
    Flag(
        "batching_idle_micros",
        int,
        0,
        BATCHING,
        "pyserving's own: also run a batch once no request has joined it for this many "
        "microseconds, so a burst smaller than max_batch_size need not wait the whole "
        "batch_timeout_micros (default: 0, off: TF Serving's behaviour)",
        metavar="MICROS",
    ),
    # ------------------------------------------------------------------ observability
    Flag(
        "event_log",
        str,
        "",
        OBSERVABILITY,
        "append every lifecycle event to this JSON-lines file (for `pyserving replay`)",
    ),
    Flag(
        "event_log_max_bytes",
        int,
        0,
        OBSERVABILITY,
        "rotate the event log when it would pass this size: LOG becomes LOG.1, ... "
        "(0 = never rotate; default: 0)",
    ),
    Flag(
        "event_log_backups",
        int,
        5,
        OBSERVABILITY,
        "rotated event log files kept (LOG.1 ... LOG.N), the oldest dropped (default: %(default)s)",
    ),
    Flag(
        "event_log_fsync",
        str,
        "interval",
        OBSERVABILITY,
        "when the event log reaches the disk: always (per event; nothing lost on power "
        "loss, slowest), interval (every --event_log_fsync_interval_seconds; default), never "
        "(the OS decides). Every event is flushed to the OS in all modes, so a killed process "
        "loses nothing",
        choices=("always", "interval", "never"),
    ),
    Flag(
        "event_log_fsync_interval_seconds",
        float,
        1.0,
        OBSERVABILITY,
        "with --event_log_fsync=interval, the most a power loss may lose (default: 1.0)",
    ),
    Flag(
        "monitoring_config_file",
        str,
        "",
        OBSERVABILITY,
        "TF Serving MonitoringConfig text proto: prometheus_config { enable: true, "
        'path: "/monitoring/prometheus/metrics" }; without it metrics are served at that '
        "path on --rest_api_port",
        _implemented("MonitoringConfig text proto"),
    ),
    Flag(
        "metrics_names",
        str,
        "both",
        OBSERVABILITY,
        "which metric families the metrics path exports: pyserving's own (pyserving_*), "
        "TF Serving's (:tensorflow:serving:*, :tensorflow:cc:saved_model:*, "
        ":tensorflow:core:graph_*, as TF Serving names them), or both (default: %(default)s)",
        choices=METRICS_NAMES,
    ),
    Flag(
        "request_log_max_bytes",
        int,
        100 * 1024 * 1024,
        OBSERVABILITY,
        "request log (a model's logging_config in --model_config_file): start a new "
        "PREFIX-<time>-<n>.tfrecord file before one would pass this size (default: 100 MiB)",
        metavar="BYTES",
    ),
    Flag(
        "request_log_max_files",
        int,
        10,
        OBSERVABILITY,
        "request log files kept per filename_prefix, the oldest removed; 0 keeps all "
        "(default: %(default)s)",
        metavar="N",
    ),
    Flag(
        "request_log_queue_size",
        int,
        1024,
        OBSERVABILITY,
        "sampled requests waiting for the request log's writer thread; more are dropped "
        "and counted in pyserving_request_log_dropped_total, never waited for "
        "(default: %(default)s)",
        metavar="N",
    ),
    Flag(
        "log_format",
        str,
        "auto",
        OBSERVABILITY,
        "console (lines for people) or json (one object a line, for machines); auto picks "
        "console when stderr is a terminal, else json (default: auto)",
        choices=("auto", "json", "console"),
    ),
    Flag(
        "log_level",
        str,
        "info",
        OBSERVABILITY,
        "lowest level logged; debug also shows TensorFlow's C++ start-up lines, hidden "
        "otherwise unless TF_CPP_MIN_LOG_LEVEL=0 (default: %(default)s)",
        choices=("debug", "info", "warning", "error"),
    ),
    # ------------------------------------------------------------------ REST
    Flag(
        "rest_api_num_threads",
        int,
        4 * _cpus(),
        REST,
        "REST requests processed at once; more wait their turn (default: 4 per CPU)",
        _implemented(
            "REST requests processed at once (others wait); the HTTP server itself is async"
        ),
        metavar="N",
    ),
    Flag(
        "rest_api_timeout_in_ms",
        int,
        30000,
        REST,
        "deadline of each REST request; past it the reply is 504 DEADLINE_EXCEEDED; "
        "0 = none (default: %(default)s)",
        _implemented("deadline of each REST request"),
        metavar="MS",
    ),
    Flag(
        "rest_header_timeout_seconds",
        float,
        20.0,
        REST,
        "a request's headers must arrive within this many seconds of its first byte, or the "
        "connection is closed (slow or stalled senders; default: %(default)s)",
        metavar="S",
    ),
    Flag(
        "rest_body_timeout_seconds",
        float,
        30.0,
        REST,
        "a body may take this many seconds per MiB it announces (at least one), or it is "
        "answered 408 and the connection closed (default: %(default)s)",
        metavar="S",
    ),
    Flag(
        "rest_idle_timeout_seconds",
        float,
        60.0,
        REST,
        "a connection with no request in flight is closed after this many seconds, from "
        "its start and after each reply (keep-alive; default: %(default)s)",
        metavar="S",
    ),
    Flag(
        "rest_max_connections",
        int,
        0,
        REST,
        "most REST connections open at once, in each process that serves them (each "
        "front-end with --workers); past it the oldest idle one is closed to make "
        "room (or the newcomer, when all are busy); 0 = half the open-file limit "
        "(default: 0)",
        metavar="N",
    ),
    Flag(
        "rest_api_enable_cors_support",
        bool,
        False,
        REST,
        "add Access-Control-Allow-* headers and answer OPTIONS preflights (default: false)",
        _implemented("TF Serving's CORS headers"),
    ),
    # ------------------------------------------------------------------ TLS and limits
    Flag(
        "ssl_config_file",
        str,
        "",
        TLS,
        "TF Serving SSLConfig text proto (server_key, server_cert, custom_ca, "
        "client_verify: the PEM text itself): TLS on the gRPC port and the Unix socket, and "
        "HTTPS with the same certificate on --rest_api_port",
        _implemented("TLS for gRPC, and HTTPS on the REST port"),
        metavar="FILE",
    ),
    Flag(
        "restricted_api",
        str,
        "",
        TLS,
        "pyserving's own, as Triton's --grpc-restricted-protocol/--http-restricted-api: "
        "answer the listed groups' calls only when the gRPC metadata or HTTP header KEY "
        "equals VALUE, others get PERMISSION_DENIED / 403. Groups: model-repository (the "
        "repository API), model-config (HandleReloadConfigRequest). Inference stays open",
        metavar="GROUPS:KEY=VALUE",
    ),
    Flag(
        "grpc_socket_path",
        str,
        "",
        TLS,
        "also serve gRPC on this Unix socket (unix:PATH)",
        _implemented("also listen on this Unix socket"),
        metavar="PATH",
    ),
    Flag(
        "grpc_channel_arguments",
        str,
        "",
        TLS,
        "gRPC server options, e.g. grpc.max_connection_age_ms=60000; integer values are "
        "passed as integers, others as strings (as TF Serving)",
        _implemented("key=value,... gRPC server options"),
        metavar="K=V,...",
    ),
    Flag(
        "grpc_max_threads",
        int,
        0,
        TLS,
        "gRPC requests handled at once; more are refused with RESOURCE_EXHAUSTED "
        "(TF Serving's exhausted thread pool); 0 = no limit (default: 0)",
        _implemented(
            "gRPC requests handled at once, more get RESOURCE_EXHAUSTED as from TF Serving's "
            "exhausted pool; default 0 = no limit (TF Serving: 4 per CPU), since requests are "
            "handled on the event loop, not on gRPC threads"
        ),
        metavar="N",
    ),
    Flag(
        "enable_grpc_healthcheck_service",
        bool,
        False,
        TLS,
        "accepted for TF Serving scripts: grpc.health.v1.Health is always on",
        FlagSupport(ACCEPTED, "grpc.health.v1.Health is always served"),
    ),
    # ------------------------------------------------------------------ TensorFlow threads
    Flag(
        "tensorflow_session_parallelism",
        int,
        0,
        THREADS,
        "threads for both intra- and inter-op parallelism (default: 0)",
        _implemented("each Session's ConfigProto: intra- and inter-op threads, both"),
        metavar="N",
    ),
    Flag(
        "tensorflow_intra_op_parallelism",
        int,
        0,
        THREADS,
        "threads that parallelise one op (default: 0)",
        _implemented("each Session's ConfigProto"),
        metavar="N",
    ),
    Flag(
        "tensorflow_inter_op_parallelism",
        int,
        0,
        THREADS,
        "threads that run independent ops at once (default: 0)",
        _implemented("each Session's ConfigProto"),
        metavar="N",
    ),
    # ------------------------------------------------- TFLite and the profiler
    Flag(
        "prefer_tflite_model",
        bool,
        False,
        TFLITE,
        "serve model.tflite where a version folder has one, else its SavedModel (default: false)",
        _implemented("serve a version folder's model.tflite instead of its SavedModel"),
    ),
    Flag(
        "use_tflite_model",
        bool,
        False,
        TFLITE,
        "older TF Serving releases' flag: serve model.tflite from every version folder; "
        "a folder without one fails to load (default: false)",
        _implemented(
            "older releases' flag: serve model.tflite from every version folder, no fallback"
        ),
    ),
    Flag(
        "num_tflite_pools",
        int,
        _cpus(),
        TFLITE,
        "TFLite interpreters per version, each single-threaded (default: one per CPU)",
        _implemented("TFLite interpreters per version"),
        metavar="N",
    ),
    Flag(
        "num_tflite_interpreters_per_pool",
        int,
        1,
        TFLITE,
        "above 1, a request larger than ceil(500/N) rows is split across the "
        "interpreters (default: %(default)s)",
        _implemented("above 1, a large batch is split across the interpreters"),
        metavar="N",
    ),
    Flag(
        "enable_profiler",
        bool,
        True,
        TFLITE,
        "serve tensorflow.ProfilerService on the gRPC port, for TensorBoard's capture and "
        "tf.profiler.experimental.client.trace; it runs in this process and opens no other "
        "port (default: true)",
        _implemented(
            "tensorflow.ProfilerService on the gRPC port (api/tfserving/profiler_service)"
        ),
    ),
    # ------------------------------------------------------------------ compatibility
    Flag(
        "version",
        bool,
        False,
        COMPAT,
        "print the version and exit",
        _implemented("print the version and exit 0"),
    ),
    Flag("flush_filesystem_caches", bool, True, COMPAT, _FLUSH.note, _FLUSH),
    Flag(
        "remove_unused_fields_from_bundle_metagraph",
        bool,
        True,
        COMPAT,
        _REMOVE_UNUSED.note,
        _REMOVE_UNUSED,
    ),
    Flag(
        "use_alts_credentials",
        bool,
        False,
        TLS,
        "ALTS credentials (grpc.alts_server_credentials) on the gRPC port and socket instead "
        "of --ssl_config_file; gRPC makes them only on Google Cloud, so elsewhere start-up "
        "stops, as TF Serving's does (default: false)",
        _implemented("ALTS server credentials for gRPC (on Google Cloud only, as gRPC's)"),
    ),
    _refused_file(
        "thread_pool_factory_config_file",
        "its thread pools are handed to each Session::Run (ThreadPoolOptions), which "
        "TensorFlow's Python Session does not take",
    ),
    # ------------------------------------- TensorFlow Sessions (api/tensorflow_settings)
    Flag(
        "tensorflow_session_config_file",
        str,
        "",
        SESSIONS,
        "a tensorflow.ConfigProto text proto for every Session; its thread counts are "
        "replaced by the parallelism flags' (even 0), as TF Serving's server.cc does",
        _implemented("a ConfigProto text proto for every Session"),
        metavar="FILE",
    ),
    Flag(
        "per_process_gpu_memory_fraction",
        float,
        0.0,
        SESSIONS,
        "the Sessions' gpu_options.per_process_gpu_memory_fraction: 0 lets TensorFlow "
        "decide, 1 takes all GPU memory at start-up (default: 0)",
        _implemented("gpu_options.per_process_gpu_memory_fraction of every Session"),
        metavar="F",
    ),
    Flag(
        "xla_cpu_compilation_enabled",
        bool,
        False,
        SESSIONS,
        "allow XLA:CPU JIT compilation; while both XLA flags are false, a model that must be "
        "compiled (jit_compile=True) fails with 'XLA compilation disabled' (default: false)",
        _implemented("XLA compilation allowed (else DisableXlaCompilation, as main.cc)"),
    ),
    Flag(
        "xla_gpu_compilation_enabled",
        bool,
        False,
        SESSIONS,
        "allow XLA:GPU JIT compilation (either XLA flag allows XLA; default: false)",
        _implemented("XLA compilation allowed (else DisableXlaCompilation, as main.cc)"),
    ),
    Flag(
        "mixed_precision",
        str,
        "",
        SESSIONS,
        "bfloat16: the Sessions' auto_mixed_precision_onednn_bfloat16 rewrite on, as TF "
        "Serving's bundle factory sets it; another value is logged and ignored, as there "
        "(default: none)",
        _implemented("bfloat16: oneDNN bfloat16 auto mixed precision in every Session"),
        metavar="MODE",
    ),
    Flag(
        "skip_initialize_tpu",
        bool,
        False,
        COMPAT,
        "accepted for TF Serving scripts: pyserving never initializes a TPU system",
        FlagSupport(ACCEPTED, "no TPU system is initialized here either way"),
    ),
    Flag(
        "enable_serialization_as_tensor_content",
        bool,
        False,
        REST,
        "gRPC Predict answers its outputs in tensor_content (Tensor::AsProtoTensorContent) "
        "instead of the typed value fields (default: false)",
        _implemented("Predict outputs in tensor_content"),
    ),
    Flag(
        "platform_config_file",
        str,
        "",
        SESSIONS,
        "a tensorflow.serving.PlatformConfigMap text proto; its tensorflow entry's "
        "SavedModelBundleSourceAdapterConfig legacy_config (session_config, "
        "batching_parameters, saved_model_tags, warm-up, TFLite, per-model batching) takes "
        "the place of those flags, --enable_batching included",
        _implemented("a PlatformConfigMap text proto in place of the Session flags"),
        metavar="FILE",
    ),
)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes", "y"):
        return True
    if value in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of the table on `parser`, in its `serve --help` group."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        group = groups.get(flag.group)
        if group is None:
            group = groups[flag.group] = parser.add_argument_group(flag.group)
        options: dict[str, Any] = {"default": flag.default, "help": flag.help}
        if flag.type is bool:
            options.update(type=parse_bool, nargs="?", const=True, metavar="BOOL")
        else:
            options["type"] = flag.type
        if flag.choices:
            options["choices"] = flag.choices
        if flag.metavar:
            options["metavar"] = flag.metavar
        group.add_argument(f"--{flag.name}", **options)


def server_options(namespace: argparse.Namespace) -> ServerOptions:
    """The `ServerOptions` of parsed `serve` flags (the command's other attributes dropped)."""
    values = vars(namespace)
    return ServerOptions(**{f.name: values[f.name] for f in FLAGS})
