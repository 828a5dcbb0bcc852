"""Server subprocesses for tests and benchmarks: a free port, start, wait until SERVING, stop.

One copy for tests/ and bench/ alike (bench imports it as `tests.util.processes`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

# Re-exported: the reliability suites import them from here.
from tests.util.proc_stats import ProcessFigures, frontend_pids, process_figures
from tests.util.waiting import eventually

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
QUIET_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def ephemeral_floor() -> int:
    """The lowest port the kernel gives outgoing connections as their source port (Linux's
    default where /proc does not say)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports this process has handed out: a server may not have bound one yet when it is asked
# for the next.
_HANDED_OUT: set[int] = set()
_PORT_SPAN = 10_000  # ports below the ephemeral range that free_port draws from


def free_port() -> int:
    """A TCP port nobody listens on right now, below the ephemeral range.

    Between this call and the server's bind, any outgoing connection on the machine may
    take a port from the ephemeral range as its source port (bench.h2load's REST target
    once failed with "address already in use" on 59015), so the port is drawn from the
    `_PORT_SPAN` ports under that range, where only listeners go, and checked free on
    every address, as servers here bind 0.0.0.0."""
    low = ephemeral_floor()
    first = max(1024, low - _PORT_SPAN)
    if first >= low:  # no room under the range: the kernel's choice, as before
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = random.randrange(first, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {first}-{low - 1} after 200 tries")


def run_python(
    *args: str, timeout: float = 300.0, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """This interpreter run with `args` in the repository root, to its end; QUIET_ENV plus
    `env` (a None value removes the variable), output captured as text. The caller checks
    the exit status it expects."""
    child_env = {k: v for k, v in {**QUIET_ENV, **(env or {})}.items() if v is not None}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=child_env,
    )


def refused_start(*flags: str, timeout: float = 120.0) -> str:
    """`pyserving serve flags`, which must refuse to start as a usage error does (exit
    status 2, the status argparse uses); its stderr, which says why."""
    result = run_python("-m", "pyserving", "serve", *flags, timeout=timeout)
    assert result.returncode == 2, f"exit status {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stderr


def serve_command(port: int, *flags: str) -> list[str]:
    """`pyserving serve` on `port` with `flags`, run by this interpreter."""
    return [sys.executable, "-m", "pyserving", "serve", f"--port={port}", *flags]


def spawn(
    command: Sequence[str],
    log_path: Path | None = None,
    env: dict[str, str | None] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` in the repository root, stdout and stderr to `log_path` (or nowhere);
    `env` adds to QUIET_ENV (a None value removes the variable); `preexec_fn` runs in the
    child before it executes (say, to set a resource limit)."""
    child_env = {k: v for k, v in {**QUIET_ENV, **(env or {})}.items() if v is not None}
    if log_path is None:
        return subprocess.Popen(
            list(command),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env,
            cwd=ROOT,
            preexec_fn=preexec_fn,
        )
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=ROOT,
            preexec_fn=preexec_fn,
        )


def wait_serving(
    address: str,
    process: subprocess.Popen[bytes],
    timeout_s: float = 60.0,
    describe: Callable[[], str] = lambda: "",
    unimplemented_is_ready: bool = False,
    poll_s: float = 0.1,
    channel: grpc.Channel | None = None,
) -> None:
    """Return once the gRPC health service at `address` says SERVING.

    `unimplemented_is_ready`: a server without a health service (the floor) is ready as
    soon as it answers. `channel`: ask on this one (connected when this returns) rather
    than a channel of its own. AssertionError, with `describe()` (say, the log's tail),
    if the process exits first or `timeout_s` passes.
    """
    own = channel is None
    channel = grpc.insecure_channel(address) if channel is None else channel
    health = health_pb2_grpc.HealthStub(channel)

    def serving() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{describe()}")
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError as exc:
            return unimplemented_is_ready and exc.code() == grpc.StatusCode.UNIMPLEMENTED
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    try:
        eventually(
            serving,
            timeout_s,
            poll_s,
            lambda: f"server at {address} to say SERVING:\n{describe()}",
        )
    finally:
        if own:
            channel.close()


def stop(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 60.0
) -> int:
    """Send `sig` and wait for the exit (killed after `timeout_s`); the exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class ServerProcess:
    """`pyserving serve` as a subprocess, with its JSON log captured to a file.

    `workers`: N > 0 appends `--workers=N` (an engine and N front-ends on the same ports);
    the end-to-end suites run their main cases both ways through `tests.util.workers`.
    `rest`: serve REST too, on `rest_port` (`url(path)` addresses it)."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str | None] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        workers: int = 0,
        rest: bool = False,
    ) -> None:
        self.port = free_port()
        self.rest_port = free_port() if rest else 0
        self.log_path = log_path
        self.workers = workers
        flags = [f"--rest_api_port={self.rest_port}", *args] if rest else list(args)
        flags = [*flags, f"--workers={workers}"] if workers else flags
        self.process = spawn(serve_command(self.port, *flags), log_path, env, preexec_fn)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def url(self, path: str) -> str:
        """`path` on this server's REST port (started with `rest=True`)."""
        assert self.rest_port, "started without rest=True"
        return f"http://127.0.0.1:{self.rest_port}{path}"

    def call(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(HTTP status, JSON reply) of a GET of `path`, or of a POST when `body` is given;
        an error status is returned, not raised, with its JSON error body ({} if empty)."""
        request = urllib.request.Request(self.url(path), data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the health service says SERVING (every model has a version)."""
        wait_serving(
            f"127.0.0.1:{self.port}",
            self.process,
            timeout,
            lambda: self.log_text()[-4000:],
            channel=self.channel,  # this server's channel, TLS when a test made it so
        )

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 60.0,
        what: str = "condition",
        interval: float = 0.1,
    ) -> T:
        """`eventually`, failing with this server's log tail (what it did instead)."""
        return eventually(
            predicate, timeout, interval, lambda: f"{what}:\n{self.log_text()[-4000:]}"
        )

    def figures(self) -> ProcessFigures:
        """Memory and threads of the whole server: the engine and, with `--workers`, its
        front-ends summed (a hostile request grows the front-end that parsed it)."""
        each = [process_figures(p) for p in (self.process.pid, *frontend_pids(self.process.pid))]
        return ProcessFigures(sum(f.rss_kib for f in each), sum(f.threads for f in each))

    def version_states(self, model: str) -> dict[int, int]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        reply = self.model_stub.GetModelStatus(request, timeout=5)
        return {s.version: s.state for s in reply.model_version_status}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        code = stop(self.process, sig, timeout)
        self.channel.close()
        return code


S = TypeVar("S", bound=ServerProcess)


@contextmanager
def serving(
    args: list[str],
    log_path: Path,
    workers: int = 0,
    timeout: float = 60.0,
    # mypy cannot check a default for a TypeVar-typed parameter (python/mypy#3737).
    server_class: type[S] = ServerProcess,  # type: ignore[assignment]
    **options: Any,
) -> Iterator[S]:
    """A started `server_class` (ServerProcess or a subclass), SERVING when the block
    starts and stopped after it, where its exit status must be 0 (a crash at shutdown is a
    failure). Stopped, too, when start-up or the block fails, so no server outlives its
    test. `options` go to the constructor (env, rest, preexec_fn)."""
    server = server_class(args, log_path, workers=workers, **options)
    try:
        server.wait_serving(timeout)
        yield server
    except BaseException:
        server.stop()
        raise
    code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log_text()[-4000:]}"
