"""`pyserving replay LOG [LOG...]`: verify an event log and print its lifecycle timeline.

Exit status: 0 when the log verifies, 1 at a divergence (the report names its sequence
number), 2 when the command cannot run as asked (a missing file, an unreadable filter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyserving.adapters.event_log import log_files, read_log_set
from pyserving.api.commands.replay_report import (
    FilterError,
    Filters,
    ReplaySource,
    parse_point,
    render_json,
    render_table,
)
from pyserving.engine.replay import SKIMMED, ReplayError, replay

EXIT_VERIFIED = 0
EXIT_DIVERGED = 1
EXIT_USAGE = 2


def add_replay_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay",
        help="verify an event log and print each version's lifecycle timeline",
        description="Re-drive a fresh manager with the facts recorded in --event_log files "
        "(aspired versions, load results, shutdowns; no model is loaded), check that every "
        "recorded transition is legal and exactly the one the manager decides again, and "
        "print a timeline per model and version. A rotated set (LOG, LOG.1, ...) is read "
        "oldest first. Exits 1 at the first divergence, naming its sequence number.",
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="event log file(s) to replay")
    parser.add_argument(
        "--format",
        choices=["table", "json"],
        default="table",
        help="table for people (default), json for tools",
    )
    parser.add_argument("--model", default=None, help="show only this model")
    parser.add_argument(
        "--since",
        default=None,
        metavar="MOMENT",
        help="show only what happened from MOMENT on: a sequence number (123), epoch seconds "
        "(1714531920.5) or an ISO 8601 time (UTC unless it has an offset)",
    )
    parser.add_argument("--until", default=None, metavar="MOMENT", help="show only up to MOMENT")
    parser.add_argument(
        "--state-at",
        "--state_at",
        "--at",
        dest="state_at",
        default=None,
        metavar="MOMENT",
        help="print the state and fingerprint of every version at MOMENT, and which version "
        "(with which fingerprint) a request got then, per model and label, instead of the "
        "timeline",
    )
    parser.set_defaults(func=run_replay)


def run_replay(options: argparse.Namespace) -> int:
    from pyserving.adapters.logging_setup import configure_logging

    configure_logging("console", "error")  # skipped lines are in the report itself
    try:
        filters = Filters(
            model=options.model,
            since=parse_point(options.since) if options.since else None,
            until=parse_point(options.until) if options.until else None,
            state_at=parse_point(options.state_at) if options.state_at else None,
        )
        files = log_files(options.logs)
    except (FilterError, FileNotFoundError) as exc:
        print(f"pyserving replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    skipped: list[tuple[Path, int, str]] = []
    try:
        result = replay(read_log_set(files, lambda *s: skipped.append(s), skim=SKIMMED))
    except (ReplayError, OSError) as exc:
        print(f"pyserving replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source = ReplaySource(files, skipped)
    render = render_json if options.format == "json" else render_table
    sys.stdout.write(render(result, source, filters))
    if options.format == "json":
        sys.stdout.write("\n")
    return EXIT_VERIFIED if result.verified else EXIT_DIVERGED
