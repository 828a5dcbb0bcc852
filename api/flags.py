"""The `serve` flags: TF Serving's `tensorflow_model_server` names, meanings and defaults.

Flags are accepted as `--name=value` or `--name value`; booleans also as a bare
`--name`, `--name=true|false|1|0`, as absl parses them for TF Serving.
"""

from __future__ import annotations

import argparse
import os


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
        help="largest request or reply message in bytes (default: 64 MiB)",
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
        "--saved_model_tags",
        default="serve",
        help="comma-separated MetaGraph tags to load (default: %(default)s)",
    )

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
    obs.add_argument(
        "--log_format", choices=["json", "console"], default="json", help="log line format"
    )
    obs.add_argument(
        "--log_level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="lowest level logged (default: %(default)s)",
    )
