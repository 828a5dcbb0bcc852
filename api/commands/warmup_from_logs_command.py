"""The `warmup-from-logs` subcommand's parser; the work is in `warmup_from_logs`, imported
only when it runs (it loads the TF Serving protos, which import TensorFlow: --help stays
fast). Exit status 0 when the file is written, 2 when it cannot be (the message says what
to give).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyserving.adapters.loaders.warmup_file import MAX_WARMUP_RECORDS

EXIT_WRITTEN = 0
EXIT_USAGE = 2


def add_warmup_from_logs_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "warmup-from-logs",
        help="make a tf_serving_warmup_requests file from request log files",
        description="Pick the PredictionLog records of one model and signature from request "
        "log files (PREFIX-<time>-<n>.tfrecord, written for a model's logging_config) and "
        "write them, oldest first, as a TFRecord file to place at "
        "<version>/assets.extra/tf_serving_warmup_requests. Responses are dropped: warm-up "
        "sends only the requests.",
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="request log file(s) to read")
    parser.add_argument("--out", required=True, metavar="FILE", help="the warm-up file to write")
    parser.add_argument(
        "--max",
        type=int,
        default=MAX_WARMUP_RECORDS,
        metavar="N",
        help=f"most records written (default and TF Serving's limit: {MAX_WARMUP_RECORDS})",
    )
    parser.add_argument(
        "--model", default=None, help="the model's records (needed when the logs hold several)"
    )
    parser.add_argument(
        "--signature",
        default=None,
        help="the signature's records (needed when the model's records ran several)",
    )
    parser.set_defaults(func=run_warmup_from_logs)


def run_warmup_from_logs(options: argparse.Namespace) -> int:
    from pyserving.api.commands.warmup_from_logs import WarmupFromLogsError, make_warmup_file

    try:
        written, model, signature = make_warmup_file(
            [Path(p) for p in options.logs],
            Path(options.out),
            options.max,
            options.model,
            options.signature,
        )
    except WarmupFromLogsError as exc:
        print(f"pyserving warmup-from-logs: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {written} records of model {model!r} signature {signature!r} to {options.out}")
    return EXIT_WRITTEN
