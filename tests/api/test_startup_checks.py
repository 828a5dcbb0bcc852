"""`serve` reports flag, config and port mistakes before TensorFlow is imported, in the
command's own words, and picks its log format by where stderr goes.

Each case runs `pyserving.api.cli.main` in a fresh interpreter and reports whether
`tensorflow` was in sys.modules when the error came back: the error cannot have waited
for TensorFlow's seconds-long import if TensorFlow was never imported.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from pyserving.adapters.logging_setup import resolve_format
from pyserving.api.startup_checks import check_port_free
from pyserving.engine.errors import ConfigurationError
from tests.util.processes import QUIET_ENV, ROOT, free_port

# main() returns the exit status for serve's own errors; argparse's exit via SystemExit.
PROBE = """
import json, sys
from pyserving.api.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print(json.dumps({"rc": rc, "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def serve_error(*flags: str) -> tuple[int, bool, str]:
    """(exit status, whether TensorFlow was imported, stderr) of `pyserving serve FLAGS`."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "serve", *flags],
        capture_output=True,
        text=True,
        env=QUIET_ENV,
        cwd=ROOT,
        timeout=120,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["rc"], report["tensorflow_imported"], result.stderr


def test_no_model_is_reported_before_tensorflow_is_imported() -> None:
    rc, tensorflow_imported, stderr = serve_error()
    assert rc == 2
    assert not tensorflow_imported
    assert stderr.startswith("pyserving serve: error: no model to serve: give --model_base_path")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--model_config_file=/nonexistent/models.config",), "/nonexistent/models.config"),
        (("--model_base_path=/m", "--batching_parameters_file=/b.txt"), "add --enable_batching"),
        (("--model_base_path=/m", "--rest_api_port=8500"), "--rest_api_port=8500 is also --port"),
        (
            ("--model_base_path=/m", "--use_alts_credentials", "--ssl_config_file=/x.pbtxt"),
            "Either use_alts_credentials must be false or ssl_config_file must be empty.",
        ),
        (("--model_base_path=/m", "--thread_pool_factory_config_file=/t"), "not supported"),
        (("--model_base_path=/m", "--ssl_config_file=/nonexistent.pbtxt"), "/nonexistent.pbtxt"),
        (("--model_base_path=/m", "--request_log_queue_size=0"), "--request_log_queue_size"),
        (("--model_base_path=/m", "--workers=-1"), "--workers=-1: give 0"),
        (("--model_base_path=/m", "--workers=2", "--port=0"), "--workers needs a fixed --port"),
        (
            ("--model_base_path=/m", "--frontend_liveness_timeout_seconds=0.5"),
            "--frontend_liveness_timeout_seconds=0.5: a front-end says it is alive every 1 s",
        ),
    ],
)
def test_bad_flags_and_config_files_are_reported_before_tensorflow(
    flags: tuple[str, ...], message: str
) -> None:
    rc, tensorflow_imported, stderr = serve_error(*flags)
    assert (rc, tensorflow_imported) == (2, False), stderr
    assert stderr.startswith("pyserving serve: error: ")
    assert message in stderr


@pytest.mark.parametrize("flag", ["port", "rest_api_port"])
def test_a_busy_port_is_reported_in_pyservings_words_before_tensorflow(flag: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        other = free_port()
        ports = {"port": other, "rest_api_port": other} | {flag: port}
        rc, tensorflow_imported, stderr = serve_error(
            "--model_base_path=/m", *(f"--{name}={value}" for name, value in ports.items())
        )
    assert (rc, tensorflow_imported) == (2, False), stderr
    assert stderr.strip() == (
        f"pyserving serve: error: port {port} is already in use (--{flag}={port}): is another "
        f"server running? Stop it, or choose another port with --{flag}"
    )


def test_a_port_shared_on_purpose_or_picked_by_the_kernel_is_not_probed() -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"port {port} is already in use"):
            check_port_free(port, "port")
        check_port_free(port, "port", reuse_port=True)  # grpc.so_reuseport=1: the user's call
    check_port_free(0, "rest_api_port")


def test_a_mistyped_flag_prints_serves_usage_and_the_closest_flag() -> None:
    rc, tensorflow_imported, stderr = serve_error("--model_nmae=mnist")
    assert (rc, tensorflow_imported) == (2, False)
    assert stderr.startswith("usage: pyserving serve ")
    assert stderr.strip().endswith(
        "pyserving serve: error: unrecognized arguments: --model_nmae=mnist "
        "(did you mean --model_name?)"
    )


def test_an_unknown_flag_with_no_near_name_gets_no_guess() -> None:
    rc, _, stderr = serve_error("--zzzzzz")
    assert rc == 2
    assert stderr.strip().endswith("pyserving serve: error: unrecognized arguments: --zzzzzz")


def test_help_says_the_log_formats_and_the_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pyserving", "serve", "--help"],
        capture_output=True,
        text=True,
        env=QUIET_ENV,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--log_format {auto,json,console}" in text
    assert "auto picks console when stderr is a terminal, else json (default: auto)" in text


# ---------------------------------------------------------------------- log format
LOG_ONE_LINE = """
import sys
import structlog
from pyserving.adapters.logging_setup import configure_logging
configure_logging(sys.argv[1])
structlog.get_logger("t").info("hello_there", answer=42)
"""


def log_line(fmt: str, terminal: bool, tmp_path: Path) -> str:
    """The line a process logging with --log_format=`fmt` writes to its stderr, which is
    a pseudo-terminal when `terminal`, else a file."""

    def log_one_line(stderr: int | IO[bytes]) -> None:
        subprocess.run(
            [sys.executable, "-c", LOG_ONE_LINE, fmt],
            stderr=stderr,
            env=QUIET_ENV,
            cwd=ROOT,
            timeout=60,
            check=True,
        )

    if terminal:
        parent, child = pty.openpty()
        try:
            log_one_line(child)
            return os.read(parent, 65536).decode().strip()
        finally:
            os.close(parent)
            os.close(child)
    path = tmp_path / "stderr"
    with open(path, "wb") as stderr:
        log_one_line(stderr)
    return path.read_text().strip()


def test_auto_logs_for_people_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    on_terminal = log_line("auto", terminal=True, tmp_path=tmp_path)
    assert not on_terminal.startswith("{")
    assert "[info     ] hello_there" in on_terminal
    assert "answer=42" in on_terminal
    piped = json.loads(log_line("auto", terminal=False, tmp_path=tmp_path))
    assert (piped["message"], piped["answer"], piped["level"]) == ("hello_there", 42, "info")


def test_log_format_overrides_the_choice(tmp_path: Path) -> None:
    assert json.loads(log_line("json", terminal=True, tmp_path=tmp_path))["answer"] == 42
    assert "hello_there" in log_line("console", terminal=False, tmp_path=tmp_path)
    assert not log_line("console", terminal=False, tmp_path=tmp_path).startswith("{")


def test_resolve_format_without_a_real_stream() -> None:
    class Closed:
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    # ignored below: a stream whose isatty raises
    assert resolve_format("auto", Closed()) == "json"  # type: ignore[arg-type]
    # ignored below: a stream whose isatty raises
    assert resolve_format("console", Closed()) == "console"  # type: ignore[arg-type]
