"""A bare engine process for the data-plane transport: it answers with what it was sent.

`python -m tests.util.ipc_echo ADDRESS [--event_loop=uvloop|asyncio]` binds ADDRESS, prints
"ready" and serves until killed. Methods: echo (params and tensors back), sleep (asyncio
sleep, then echo), block (holds the loop with time.sleep, then echo), fail (a ServingError
of params' code and message), crash (an unexpected exception). No model work: the bench
measures the transport's own cost against it, and the tests its behaviour.

`spawn_echo_engine` starts one and waits for "ready" (`spawn_ready`: any such engine);
one copy for tests and bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator

from pyserving.adapters.ipc import Answer, Call, ClientOptions, EngineClient, EngineEndpoint
from pyserving.api.serving_loop import EVENT_LOOPS, run_on_loop
from pyserving.engine.errors import Code, ServingError


async def echo_handler(call: Call) -> Answer:
    if call.method == "echo":
        return Answer(call.params, call.tensors)
    if call.method == "sleep":
        await asyncio.sleep(call.params["seconds"])
        return Answer(call.params, call.tensors)
    if call.method == "block":
        time.sleep(call.params["seconds"])
        return Answer(call.params, call.tensors)
    if call.method == "fail":
        raise ServingError(Code[call.params["code"]], call.params["message"])
    if call.method == "crash":
        raise RuntimeError("the echo engine crashed on purpose")
    raise ServingError(Code.UNIMPLEMENTED, f"no method {call.method!r}")


async def serve(address: str) -> None:
    endpoint = EngineEndpoint(address, echo_handler)
    endpoint.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def spawn_ready(command: list[str]) -> subprocess.Popen[str]:
    """Start an engine process and return once it prints "ready" (it has bound its socket)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"{command} did not start: {line!r}, exit {process.wait()}")
    return process


@contextlib.contextmanager
def ipc_address() -> Iterator[str]:
    """An ipc:// address in a private folder (ipc paths must be short), removed after."""
    folder = tempfile.mkdtemp(prefix="ipc-", dir="/tmp")
    try:
        yield f"ipc://{folder}/engine"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def with_client(
    address: str,
    body: Callable[[EngineClient], Awaitable[None]],
    options: ClientOptions | None = None,
    event_loop: str = "asyncio",
) -> None:
    """Run `body` with a connected front-end client on a fresh loop, closing it after."""

    async def run() -> None:
        client = EngineClient(address, options)
        await client.connect()
        try:
            await body(client)
        finally:
            await client.close()

    run_on_loop(run(), event_loop)


def spawn_echo_engine(address: str, event_loop: str = "asyncio") -> subprocess.Popen[str]:
    """Start an echo engine on `address`; returns once it has bound it."""
    return spawn_ready(
        [sys.executable, "-m", "tests.util.ipc_echo", address, f"--event_loop={event_loop}"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--event_loop", choices=EVENT_LOOPS, default="asyncio")
    args = parser.parse_args()
    run_on_loop(serve(args.address), args.event_loop)


if __name__ == "__main__":
    main()
