"""One front-end process of `--workers=N`: `python -m pyserving.api.frontend`.

The engine starts it with the server's own flags, the data plane's address and its pid.
It serves gRPC and REST on the server's ports beside the other front-ends (SO_REUSEPORT:
the kernel spreads connections across them), runs each request's envelope (ids, access
log, deadline, drain, traces, request log) and hands the request to the engine in one
data-plane call (docs/processes.md). Its finished requests are counted by the engine, so
one scrape shows every process.

It never imports TensorFlow's runtime: `import_api_protos()` loads the very message
classes clients use from the wheels, first, and nothing here imports a loader. It exits
0 after SIGTERM's drain, and 1 when the engine is gone (its socket closed, or the
kernel's PR_SET_PDEATHSIG): no front-end answers for a dead engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence

from pyserving.adapters.tf_protos import import_api_protos
from pyserving.api.server_options import ServerOptions

ENGINE_GONE_S = 2.0  # how long a lost engine connection may take to come back


def frontend_args(options: ServerOptions, address: str, worker: int, engine_pid: int) -> list[str]:
    """A front-end's command line: the server's flags that differ from their defaults, the
    engine's data-plane address, its slot and the engine's pid."""
    args = [f"--engine_address={address}", f"--worker_index={worker}", f"--engine_pid={engine_pid}"]
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if value != field.default:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            args.append(f"--{field.name}={text}")
    return args


def build_parser() -> argparse.ArgumentParser:
    from pyserving.api.flags import add_serve_flags

    parser = argparse.ArgumentParser(
        prog="python -m pyserving.api.frontend",
        description="One front-end process of `pyserving serve --workers=N`; the engine "
        "starts it. Serves gRPC and REST on the server's ports and hands each request to "
        "the engine at --engine_address.",
    )
    own = parser.add_argument_group("front-end")
    own.add_argument("--engine_address", required=True, help="the engine's data plane (ipc://)")
    own.add_argument("--worker_index", type=int, default=0, help="this front-end's slot")
    own.add_argument(
        "--engine_pid", type=int, default=0, help="exit when this process dies (0: not watched)"
    )
    add_serve_flags(parser)
    return parser


async def serve_frontend(options: ServerOptions, address: str, worker: int) -> int:
    """Serve until SIGTERM (exit 0 after the drain) or the engine is gone (1)."""
    import structlog

    from pyserving.adapters.frontend_supervisor import HEARTBEAT_S
    from pyserving.adapters.ipc import EngineClient
    from pyserving.adapters.ipc.data_plane import RemoteDataPlane
    from pyserving.adapters.ipc.frontend_services import (
        ConfigFollowingClient,
        EngineExposition,
        ObservationShipper,
    )
    from pyserving.adapters.tracing import tracing_from_environment
    from pyserving.api.envelope.request_envelope import Envelope, observer_series
    from pyserving.api.protocol_servers import ProtocolServers, request_log_from_flags
    from pyserving.engine.errors import ServingError

    log = structlog.get_logger("pyserving.frontend")
    client = EngineClient(address)
    await client.connect(timeout_s=30.0)
    following = ConfigFollowingClient(client)
    shipper = ObservationShipper(client)
    tracing = tracing_from_environment()
    tracer = None if tracing is None else tracing.requests
    envelope = Envelope(series=observer_series(shipper.add), tracer=tracer)
    request_log = request_log_from_flags(
        options,
        lambda: following.config,
        shipper.request_log_drop,
        shipper.request_log_written,
    )
    servers = ProtocolServers(
        options,
        RemoteDataPlane(following, tracer),
        envelope,
        request_log,
        EngineExposition(client, shipper),
        shared_ports=True,
        unix_socket=worker == 0,  # one process can listen on a Unix socket's path
    )
    await servers.start()
    alive = {"worker": worker, "pid": os.getpid()}
    await client.call("frontend_ready", alive, timeout_s=10.0)
    log.info("frontend_serving", worker=worker, grpc_port=servers.port, rest_port=servers.http_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C reaches the whole process group: the engine decides, and sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine_gone = False

    async def watch_engine() -> None:
        nonlocal engine_gone
        while True:
            await client.disconnected.wait()
            try:
                await client.wait_connected(ENGINE_GONE_S)
            except ServingError:  # UNAVAILABLE: not back within ENGINE_GONE_S
                engine_gone = True
                log.error("engine_gone", worker=worker, address=address)
                stop.set()
                return

    async def heartbeat() -> None:
        """Say, from this loop, that it turns: the engine replaces a front-end that stops."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(ServingError):  # the engine is away: watch_engine decides
                await client.call("frontend_ready", alive, timeout_s=HEARTBEAT_S * 5)

    watchers = [asyncio.create_task(watch_engine()), asyncio.create_task(heartbeat())]
    await stop.wait()
    for watcher in watchers:
        watcher.cancel()
    grace_s = 0.0 if engine_gone else options.shutdown_grace_seconds
    await servers.drain(grace_s)
    await servers.close()
    if not engine_gone:
        await shipper.flush()
    await asyncio.to_thread(request_log.close)
    await client.close()
    if tracing is not None:
        tracing.shutdown()
    log.info("frontend_stopped", worker=worker, engine_gone=engine_gone)
    return 1 if engine_gone else 0


def main(argv: Sequence[str] | None = None) -> int:
    import_api_protos()  # before anything imports tensorflow_serving.apis
    namespace = build_parser().parse_args(argv)
    from pyserving.adapters.frontend_supervisor import die_with_parent
    from pyserving.adapters.logging_setup import configure_logging
    from pyserving.api.flags import server_options
    from pyserving.api.serving_loop import run_on_loop

    options = server_options(namespace)
    if namespace.engine_pid:
        die_with_parent(namespace.engine_pid)
    configure_logging(options.log_format, options.log_level)
    import structlog

    structlog.contextvars.bind_contextvars(worker=namespace.worker_index)
    return run_on_loop(
        serve_frontend(options, namespace.engine_address, namespace.worker_index),
        options.event_loop,
    )


if __name__ == "__main__":
    sys.exit(main())
