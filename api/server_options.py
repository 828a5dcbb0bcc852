"""`ServerOptions`: the server's settings, one typed field per `serve` flag.

Written out (not made at run time from the flag table) so that readers, editors and mypy
see each field's type and meaning, as MLServer's settings.py does. The flag table
(api/flags.py `FLAGS`) stays the one place that parses them: `flags.server_options`
builds this once from the parsed flags, and tests/test_server_options.py fails if the
table and these fields ever disagree on a name, a type or a default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from pyserving.adapters.loaders.platforms import TENSORFLOW


@dataclass(frozen=True)
class ServerOptions:
    """The server's settings, from the flags; built once by the CLI and frozen. Field names
    are the flags' names, defaults TF Serving's (or pyserving's, for its own flags)."""

    port: int = 8500
    """The gRPC port."""
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message and REST body in bytes."""
    max_request_tensor_bytes: int = 0
    """Most bytes one request's decoded tensors may take; 0 = twice grpc_max_message_bytes."""
    rest_api_port: int = 0
    """HTTP port for the REST APIs, metrics and probes; 0 turns HTTP off."""
    model_name: str = "default"
    """Name clients use in model_spec."""
    model_base_path: str = ""
    """Folder holding numbered version folders (1, 2, ...) of the model."""
    file_system_poll_wait_seconds: float = 1.0
    """Seconds between looks for new versions; 0 looks once."""
    model_cache_dir: str = ""
    """Local folder for versions downloaded from object stores (s3://, gs://)."""
    model_cache_max_bytes: int = 20 * 1024**3
    """Most bytes of downloaded versions kept at once."""
    saved_model_tags: str = "serve"
    """Comma-separated MetaGraph tags to load."""
    model_config_file: str = ""
    """A ModelServerConfig text proto listing the models."""
    model_config_file_poll_wait_seconds: float = 0.0
    """Seconds between re-reads of model_config_file; 0 reads it once."""
    model_repository: str = ""
    """A folder of model folders served through OIP's repository API; "" = off."""
    model_repository_load_all: bool = False
    """Load every model folder of model_repository at start-up."""
    allow_version_labels_for_unavailable_models: bool = False
    """Move a label to its configured version at once, even before that version is available."""
    promotion_gates_file: str = ""
    """A TOML file of promotion gates a label's new version must pass before it moves."""
    max_num_load_retries: int = 5
    """Retries of a failed load before the version ends in error."""
    load_retry_interval_micros: int = 60_000_000
    """Wait between load retries in microseconds."""
    load_timeout_seconds: float = 0.0
    """A load attempt running longer fails (and counts as an attempt); 0 = no limit."""
    num_load_threads: int = 0
    """Threads loading versions; 0 loads one at a time, as TF Serving."""
    num_unload_threads: int = 0
    """Threads unloading versions; 0 means one."""
    aspired_version_policy: str = "availability"
    """availability: load the new version before unloading the old; resource: unload first."""
    num_request_threads: int = max(4, 2 * (os.cpu_count() or 1))
    """Threads running model calls for requests (2 per CPU, at least 4)."""
    event_loop: str = "asyncio" if sys.platform == "win32" else "uvloop"
    """The serving loop: uvloop or asyncio."""
    workers: int = 0
    """Front-end processes serving gRPC and REST for this engine; 0 = one process does all."""
    frontend_liveness_timeout_seconds: float = 10.0
    """With workers, a front-end silent this long is killed and restarted; 0 = never."""
    shutdown_grace_seconds: float = 30.0
    """On SIGTERM, how long in-flight requests may take to finish."""
    model_platform: str = TENSORFLOW
    """How versions are loaded: tensorflow (SavedModels) or python (a folder with model.py)."""
    enable_model_warmup: bool = True
    """Replay each version's warm-up records before it serves."""
    num_request_iterations_for_warmup: int = 1
    """Times each warm-up record is replayed."""
    enable_signature_method_name_check: bool = False
    """Classify/Regress only on signatures whose method_name says classify/regress."""
    enable_batching: bool = False
    """Merge concurrent Predict requests for one version and signature into one model run."""
    batching_parameters_file: str = ""
    """A BatchingParameters text proto, as for tensorflow_model_server."""
    enable_per_model_batching_parameters: bool = False
    """Batch a version by its own batching_params.pbtxt instead of the file's."""
    batching_idle_micros: int = 0
    """Also run a batch once no request has joined it for this long; 0 = off."""
    event_log: str = ""
    """Append every lifecycle event to this JSON-lines file (for `pyserving replay`)."""
    event_log_max_bytes: int = 0
    """Rotate the event log when it would pass this size; 0 = never."""
    event_log_backups: int = 5
    """Rotated event log files kept (LOG.1 ... LOG.N), the oldest dropped."""
    event_log_fsync: str = "interval"
    """When the event log reaches the disk: always, interval or never."""
    event_log_fsync_interval_seconds: float = 1.0
    """With event_log_fsync=interval, the most a power loss may lose."""
    monitoring_config_file: str = ""
    """A TF Serving MonitoringConfig text proto."""
    metrics_names: str = "both"
    """Which metric families the metrics path exports: pyserving, tfserving or both."""
    request_log_max_bytes: int = 100 * 1024 * 1024
    """Start a new request log file before one would pass this size."""
    request_log_max_files: int = 10
    """Request log files kept per filename_prefix, the oldest removed; 0 keeps all."""
    request_log_queue_size: int = 1024
    """Sampled requests waiting for the request log's writer thread."""
    log_format: str = "auto"
    """console, json, or auto (console on a terminal, else json)."""
    log_level: str = "info"
    """Lowest level logged."""
    rest_api_num_threads: int = 4 * (os.cpu_count() or 1)
    """REST requests processed at once; more wait their turn."""
    rest_api_timeout_in_ms: int = 30000
    """Deadline of each REST request; past it the reply is 504 DEADLINE_EXCEEDED; 0 = none."""
    rest_header_timeout_seconds: float = 20.0
    """A request's headers must arrive within this many seconds of its first byte."""
    rest_body_timeout_seconds: float = 30.0
    """A body may take this many seconds per MiB it announces."""
    rest_idle_timeout_seconds: float = 60.0
    """A connection with no request in flight is closed after this many seconds."""
    rest_max_connections: int = 0
    """Most REST connections open at once per process; 0 = half the open-file limit."""
    rest_api_enable_cors_support: bool = False
    """Add Access-Control-Allow-* headers and answer OPTIONS preflights."""
    ssl_config_file: str = ""
    """A TF Serving SSLConfig text proto (TLS on the gRPC and REST ports)."""
    restricted_api: str = ""
    """Groups of calls answered only when a header KEY equals VALUE (as Triton's)."""
    grpc_socket_path: str = ""
    """Also serve gRPC on this Unix socket (unix:PATH)."""
    grpc_channel_arguments: str = ""
    """gRPC server options, e.g. grpc.max_connection_age_ms=60000."""
    grpc_max_threads: int = 0
    """gRPC requests handled at once, more refused with RESOURCE_EXHAUSTED; 0 = no limit."""
    enable_grpc_healthcheck_service: bool = False
    """Accepted: grpc.health.v1.Health is always on."""
    tensorflow_session_parallelism: int = 0
    """Threads for both intra- and inter-op parallelism."""
    tensorflow_intra_op_parallelism: int = 0
    """Threads that parallelise one op."""
    tensorflow_inter_op_parallelism: int = 0
    """Threads that run independent ops at once."""
    prefer_tflite_model: bool = False
    """Serve model.tflite where a version folder has one, else its SavedModel."""
    use_tflite_model: bool = False
    """Serve model.tflite from every version folder (older TF Serving releases' flag)."""
    num_tflite_pools: int = os.cpu_count() or 1
    """TFLite interpreters per version, each single-threaded."""
    num_tflite_interpreters_per_pool: int = 1
    """Above 1, a large request is split across the interpreters."""
    enable_profiler: bool = True
    """Serve tensorflow.ProfilerService on the gRPC port."""
    version: bool = False
    """Print the version and exit."""
    flush_filesystem_caches: bool = True
    """Accepted: there are no file-system caches to flush after a load."""
    remove_unused_fields_from_bundle_metagraph: bool = True
    """Accepted: only the signatures are kept from the MetaGraph either way."""
    use_alts_credentials: bool = False
    """ALTS credentials on the gRPC port (only on Google Cloud)."""
    thread_pool_factory_config_file: str = ""
    """Refused when given: Python's Session takes no thread pools per run."""
    tensorflow_session_config_file: str = ""
    """A tensorflow.ConfigProto text proto for every Session."""
    per_process_gpu_memory_fraction: float = 0.0
    """The Sessions' gpu_options.per_process_gpu_memory_fraction."""
    xla_cpu_compilation_enabled: bool = False
    """Allow XLA:CPU JIT compilation."""
    xla_gpu_compilation_enabled: bool = False
    """Allow XLA:GPU JIT compilation."""
    mixed_precision: str = ""
    """bfloat16: the Sessions' oneDNN bfloat16 rewrite on; "" = off."""
    skip_initialize_tpu: bool = False
    """Accepted: pyserving never initializes a TPU system."""
    enable_serialization_as_tensor_content: bool = False
    """gRPC Predict answers its outputs in tensor_content."""
    platform_config_file: str = ""
    """A PlatformConfigMap text proto in place of the Session flags."""
