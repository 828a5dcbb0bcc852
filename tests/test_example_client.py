"""The example client shows a progress bar on a terminal (tqdm) and none in a pipe.

It is pointed at a port nobody listens on: every request fails fast with UNAVAILABLE,
which the bar counts, and the client says to start a server first.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from tests.util.processes import QUIET_ENV, ROOT, free_port

CLIENT = ROOT / "examples" / "mnist_client.py"


def client_command() -> list[str]:
    return [sys.executable, str(CLIENT), "--num_tests=5", f"--server=127.0.0.1:{free_port()}"]


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the pty's far end closed: all was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_with_the_errors_so_far() -> None:
    parent, child = pty.openpty()
    # A new pty is 0 columns wide, where tqdm draws nothing; a terminal has a width.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        process = subprocess.Popen(
            client_command(), stdout=subprocess.PIPE, stderr=child, env=QUIET_ENV, cwd=ROOT
        )
        os.close(child)
        stderr = read_all(parent)
        stdout = process.communicate(timeout=120)[0].decode()
    finally:
        os.close(parent)
    assert process.returncode == 1  # nothing reached a server
    assert "100%|" in stderr and "5/5" in stderr, stderr
    assert "rpc_errors=5" in stderr, stderr
    assert "could not reach a model server" in stderr
    assert stdout.splitlines()[-1] == "Inference error rate: 100.0%"


def test_a_pipe_gets_no_bar() -> None:
    result = subprocess.run(
        client_command(), capture_output=True, text=True, env=QUIET_ENV, cwd=ROOT, timeout=120
    )
    assert result.returncode == 1
    assert "|" not in result.stderr and "\r" not in result.stderr, result.stderr
    assert "5 requests in" in result.stderr
