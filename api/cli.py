"""The `pyserving` command line: `serve` (TF Serving's flags) and the operator tools."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence

import pyserving
from pyserving.api.commands.compare_command import add_compare_command
from pyserving.api.commands.replay_command import add_replay_command
from pyserving.api.commands.warmup_from_logs_command import add_warmup_from_logs_command
from pyserving.api.flags import add_serve_flags, server_options
from pyserving.api.serving_loop import run_on_loop


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyserving",
        description="A model server for TensorFlow SavedModels with TF Serving's API.",
    )
    parser.add_argument("--version", action="version", version=f"pyserving {pyserving.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser(
        "serve",
        help="serve models over gRPC (flags as tensorflow_model_server's)",
        description="Serve the versions found under --model_base_path over gRPC, loading new "
        "versions and retiring old ones while running. Stop with SIGTERM or Ctrl-C.",
    )
    add_serve_flags(serve)
    serve.set_defaults(func=_run_serve)
    add_replay_command(commands)
    add_warmup_from_logs_command(commands)
    add_compare_command(commands)
    return parser


def _run_serve(namespace: argparse.Namespace) -> int:
    options = server_options(namespace)  # built once, frozen: what the server is given
    if options.version:  # `tensorflow_model_server --version` prints and exits 0
        from pyserving.api.flag_compat import version_text

        print(version_text())
        return 0
    from pyserving.adapters.logging_setup import configure_logging

    configure_logging(options.log_format, options.log_level)
    # Flags, config files and ports first: a mistake is reported before TensorFlow's
    # seconds-long import, not after it.
    from pyserving.api.startup_checks import check_before_tensorflow
    from pyserving.engine.errors import ConfigurationError

    try:
        check_before_tensorflow(options)
    except ConfigurationError as exc:
        print(f"pyserving serve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    from pyserving.adapters.tensorflow_import import import_tensorflow

    import_tensorflow(verbose=options.log_level == "debug")
    from pyserving.api.server import serve

    try:
        return run_on_loop(serve(options), options.event_loop)
    except ConfigurationError as exc:
        print(f"pyserving serve: error: {exc}", file=sys.stderr)
        return exc.exit_code


def closest_flag(parser: argparse.ArgumentParser, unknown: str) -> str | None:
    """The option of `parser` nearest to the unrecognised `unknown` (`--model_nmae=x`)."""
    name = unknown.split("=", 1)[0]
    if not name.startswith("-"):
        return None
    options = [o for action in parser._actions for o in action.option_strings]
    matches = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-command's own parser (its usage), found through the sub-parsers action."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own usage, not pyserving's, with the flag meant
        command_parser = _command_parser(parser, options.command)
        message = f"unrecognized arguments: {' '.join(unknown)}"
        suggestion = closest_flag(command_parser, unknown[0])
        if suggestion:
            message += f" (did you mean {suggestion}?)"
        command_parser.error(message)
    return int(options.func(options))


def tensorflow_model_server_main(argv: Sequence[str] | None = None) -> int:
    """`tensorflow_model_server ARGS` is `pyserving serve ARGS`, for scripts written for it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return main(["serve", *args])
