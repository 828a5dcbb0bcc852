"""The `serve` flags: TF Serving's `tensorflow_model_server` names, meanings and defaults.

Flags are accepted as `--name=value` or `--name value`; booleans also as a bare
`--name`, `--name=true|false|1|0`, as absl parses them for TF Serving.
"""

from __future__ import annotations

import argparse
import os

from pyserving.adapters.loaders.platforms import KNOWN_PLATFORMS, TENSORFLOW
from pyserving.api.flag_compat import add_compat_flags


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes", "y"):
        return True
    if value in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_bool(group: argparse._ArgumentGroup, name: str, default: bool, help: str) -> None:
    group.add_argument(
        name, type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
    )


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network")
    net.add_argument("--port", type=int, default=8500, help="gRPC port (default: %(default)s)")
    net.add_argument(
        "--grpc_max_message_bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="largest gRPC message and REST body in bytes; larger requests are refused "
        "unread with RESOURCE_EXHAUSTED / HTTP 413 (default: 64 MiB)",
    )
    net.add_argument(
        "--rest_api_port",
        type=int,
        default=0,
        help="HTTP port for TF Serving's REST API (/v1/models/...), "
        "/monitoring/prometheus/metrics, /healthz and /readyz; 0 turns the HTTP server off "
        "(default: 0)",
    )

    model = parser.add_argument_group("model (one model; see --model_config_file for many)")
    model.add_argument("--model_name", default="default", help="name clients use in model_spec")
    model.add_argument(
        "--model_base_path",
        default="",
        help="folder holding numbered version folders (1, 2, ...) of the model",
    )
    model.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between looks for new versions; 0 looks once (default: %(default)s)",
    )
    model.add_argument(
        "--model_cache_dir",
        default="",
        help="local folder for versions downloaded from object stores (s3://, gs://); "
        "default: a new temporary folder",
    )
    model.add_argument(
        "--model_cache_max_bytes",
        type=int,
        default=20 * 1024**3,
        help="most bytes of downloaded versions kept at once (default: 20 GiB)",
    )
    model.add_argument(
        "--saved_model_tags",
        default="serve",
        help="comma-separated MetaGraph tags to load (default: %(default)s)",
    )

    add_models_flags(parser)

    life = parser.add_argument_group("lifecycle")
    life.add_argument(
        "--max_num_load_retries",
        type=int,
        default=5,
        help="retries of a failed load before the version ends in error (default: %(default)s)",
    )
    life.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=60_000_000,
        help="wait between load retries in microseconds (default: 60 s)",
    )
    life.add_argument(
        "--load_timeout_seconds",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pyserving's own: a load attempt running longer fails (counted as an attempt, "
        "so retries follow --max_num_load_retries); its thread cannot be stopped, so it is "
        "left to finish and what it loads is discarded. 0 = no limit (default)",
    )
    life.add_argument(
        "--num_load_threads",
        type=int,
        default=0,
        help="threads loading versions; 0 loads one at a time, as TF Serving (default: 0)",
    )
    life.add_argument(
        "--num_unload_threads",
        type=int,
        default=0,
        help="threads unloading versions; 0 means one (default: 0)",
    )
    life.add_argument(
        "--aspired_version_policy",
        choices=["availability", "resource"],
        default="availability",
        help="availability: load the new version before unloading the old (TF Serving's "
        "behaviour); resource: unload first, for models that do not fit twice",
    )
    life.add_argument(
        "--num_request_threads",
        type=int,
        default=max(4, 2 * (os.cpu_count() or 1)),
        help="threads running model calls for requests (default: 2 per CPU, at least 4)",
    )
    life.add_argument(
        "--shutdown_grace_seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may take to finish (default: 30)",
    )

    add_platform_and_warmup_flags(parser)
    batching = parser.add_argument_group("batching")
    _add_bool(
        batching,
        "--enable_batching",
        default=False,
        help="merge concurrent Predict requests for one version and signature into one model "
        "run (default: false)",
    )
    batching.add_argument(
        "--batching_parameters_file",
        default="",
        metavar="FILE",
        help="a BatchingParameters text proto, as for tensorflow_model_server (e.g. "
        "'max_batch_size { value: 128 }'); needs --enable_batching. Without it, TF Serving's "
        "defaults apply",
    )
    batching.add_argument(
        "--batching_idle_micros",
        type=int,
        default=0,
        metavar="MICROS",
        help="pyserving's own: also run a batch once no request has joined it for this many "
        "microseconds, so a burst smaller than max_batch_size need not wait the whole "
        "batch_timeout_micros (default: 0, off: TF Serving's behaviour)",
    )

    obs = parser.add_argument_group("observability")
    obs.add_argument(
        "--event_log",
        default="",
        help="append every lifecycle event to this JSON-lines file (for `pyserving replay`)",
    )
    add_event_log_flags(obs)
    obs.add_argument(
        "--monitoring_config_file",
        default="",
        help="TF Serving MonitoringConfig text proto: prometheus_config { enable: true, "
        'path: "/monitoring/prometheus/metrics" }; without it metrics are served at that '
        "path on --rest_api_port",
    )
    obs.add_argument(
        "--log_format", choices=["json", "console"], default="json", help="log line format"
    )
    obs.add_argument(
        "--log_level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="lowest level logged (default: %(default)s)",
    )
    add_compat_flags(parser)  # REST, TLS and limits, TensorFlow threads, compatibility


def add_event_log_flags(group: argparse._ArgumentGroup) -> None:
    """Rotation and durability of --event_log (see adapters/event_log.py for the trade-off)."""
    group.add_argument(
        "--event_log_max_bytes",
        type=int,
        default=0,
        help="rotate the event log when it would pass this size: LOG becomes LOG.1, ... "
        "(0 = never rotate; default: 0)",
    )
    group.add_argument(
        "--event_log_backups",
        type=int,
        default=5,
        help="rotated event log files kept (LOG.1 ... LOG.N), the oldest dropped "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--event_log_fsync",
        choices=["always", "interval", "never"],
        default="interval",
        help="when the event log reaches the disk: always (per event; nothing lost on power "
        "loss, slowest), interval (every --event_log_fsync_interval_seconds; default), never "
        "(the OS decides). Every event is flushed to the OS in all modes, so a killed process "
        "loses nothing",
    )
    group.add_argument(
        "--event_log_fsync_interval_seconds",
        type=float,
        default=1.0,
        help="with --event_log_fsync=interval, the most a power loss may lose (default: 1.0)",
    )


def add_platform_and_warmup_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("platforms, warm-up and request checks")
    group.add_argument(
        "--model_platform",
        choices=KNOWN_PLATFORMS,
        default=TENSORFLOW,
        help="how versions are loaded: tensorflow (SavedModels) or python (a folder with "
        "model.py); default: %(default)s",
    )
    _add_bool(
        group,
        "--enable_model_warmup",
        True,
        "replay each version's assets.extra/tf_serving_warmup_requests before it serves, "
        "so the first request is not slow (default: true)",
    )
    group.add_argument(
        "--num_request_iterations_for_warmup",
        type=int,
        default=1,
        metavar="N",
        help="times each warm-up record is replayed (default: %(default)s)",
    )
    _add_bool(
        group,
        "--enable_signature_method_name_check",
        False,
        "Classify/Regress only on signatures whose method_name says classify/regress; "
        "leave false to serve native TF2 models (default: false)",
    )


def add_models_flags(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models (many, from a config file)")
    models.add_argument(
        "--model_config_file",
        default="",
        metavar="FILE",
        help="a ModelServerConfig text proto listing the models (model_config_list { config "
        "{ name base_path model_platform model_version_policy version_labels } ... }); "
        "when given, --model_name and --model_base_path are ignored",
    )
    models.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        metavar="SECONDS",
        default=0.0,
        help="seconds between re-reads of --model_config_file, applying what changed; a bad "
        "edit is logged and the last good config keeps running. 0 reads it once (default)",
    )
    _add_bool(
        models,
        "--allow_version_labels_for_unavailable_models",
        default=False,
        help="move a label to its configured version at once, even before that version is "
        "available (TF Serving's meaning). Default: a label moves only when its version is "
        "available and keeps answering with the old version until then",
    )
