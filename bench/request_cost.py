"""`python -m bench.request_cost`: what pyserving's own code costs one Predict, in CPU µs.

h2load's req/s on this shared machine swings 10-30% between runs, more than most changes
to the request path are worth, so this measures that path in-process, with no transport:
a real `ModelServer` (its envelope, metrics of both namings, request core, runner and the
example SavedModel, TensorFlow's ops in the calling thread as bench/h2load.py serves them)
built from flags, unbatched and with `--enable_batching` (bench/h2load.py's batching file
and REST slots, `REST_SLOTS`), and each asked for the same one-image Predict:
- gRPC: the method handler `add_service` registers (the envelope's behaviour around
  PredictionService.Predict), with a stand-in for grpc's ServicerContext;
- REST: the `/v1/models/mnist:predict` handler, with an aiohttp request made in memory.
`--concurrency` requests are in flight at once (as h2load's clients keep them), so batches
form as they do under load. The CPU counted is the whole process's (`time.process_time`:
the loop, request and batch threads, TensorFlow's) over a round, divided by its requests;
rounds interleave the variants and medians are reported. What is left out is exactly what
the h2load floor measures (grpc's or aiohttp's own transport), so with that floor's cost
per request F, a ratio target r to the floor leaves F * (1/r - 1) for this figure.
Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.h2load import (
    BATCHING,
    ONE_CPU_SESSION,
    REST_PATH,
    REST_SLOTS,
    one_image_request,
    session_flags,
)
from bench.targets import ROOT
from bench.trace_cost import CallContext
from pyserving.api.serving_loop import EVENT_LOOPS, run_on_loop
from tests.util.processes import free_port
from tests.util.waiting import eventually_async

RESULTS = ROOT / "bench" / "results"


async def start_server(model_base: Path, *flags: str) -> Any:
    """A real ModelServer from `pyserving serve` flags, serving the model's version 1."""
    from pyserving.api.cli import build_parser
    from pyserving.api.flags import server_options
    from pyserving.api.server import ModelServer

    argv = [
        "serve",
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
        REST_SLOTS,
        "--model_name=mnist",
        f"--model_base_path={model_base}",
        "--file_system_poll_wait_seconds=0",
        *session_flags(*ONE_CPU_SESSION),
        *flags,
    ]
    server = ModelServer(server_options(build_parser().parse_args(argv)))
    await server.start()
    try:
        await eventually_async(
            lambda: "mnist" in server.servable_map.snapshot, 120, 0.05, "mnist to load"
        )
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None
    return server


def grpc_call(server: Any) -> Any:
    """The gRPC Predict handler as `add_service` builds it, with a stand-in context."""
    from pyserving.api.envelope.request_envelope import grpc_behavior
    from pyserving.api.protocol_servers import plan_options
    from pyserving.api.tfserving.prediction_service import PredictionService

    service = PredictionService(server.data_plane, plan_options(server.options), server.request_log)
    behavior = grpc_behavior(server.envelope, "Predict", service.Predict)
    request = one_image_request(_image())
    context = CallContext()

    async def call() -> np.ndarray:
        reply = await behavior(request, context)
        return np.array(reply.outputs["scores"].float_val)

    return call


def rest_call(server: Any) -> Any:
    """The REST `:predict` handler, with an aiohttp request built in memory.

    aiohttp's `make_mocked_request` makes its stand-ins with unittest.mock, which costs
    milliseconds a request (and tens of µs for each use of them): each call here gets a
    real `Request` around a fresh body stream, with plain stand-ins for the connection."""
    from aiohttp import streams, web
    from aiohttp.test_utils import make_mocked_request

    api = server._rest_api()
    body = json.dumps({"instances": _image().tolist()}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    template = make_mocked_request("POST", REST_PATH, headers=headers)
    protocol = _Protocol()

    async def call() -> np.ndarray:
        loop = asyncio.get_running_loop()
        payload = streams.StreamReader(protocol, 1 << 16, loop=loop)
        payload.feed_data(body)
        payload.feed_eof()
        request = web.Request(
            template._message,
            payload,
            protocol,
            template._payload_writer,
            template.task,
            loop,
            client_max_size=1 << 20,
        )
        reply = await api.handle(request)
        answer = json.loads(reply.body)
        if "predictions" not in answer:
            raise SystemExit(f"REST answered {reply.status}: {answer}")
        return np.array(answer["predictions"][0])

    return call


class _Protocol:
    """What aiohttp's Request and StreamReader ask of the connection's protocol."""

    _reading_paused = False
    ssl_context = None
    peername = ("127.0.0.1", 50000)
    sockname = ("127.0.0.1", 8501)

    def pause_reading(self, **_: Any) -> None: ...

    def resume_reading(self, **_: Any) -> None: ...


def _image() -> np.ndarray:
    from bench.__main__ import test_images

    return test_images()[0].reshape(1, -1).astype(np.float32)


async def round_cpu_us(call: Any, requests: int, concurrency: int) -> tuple[float, float]:
    """The process's and the loop thread's CPU µs per request over `requests` calls,
    `concurrency` at a time."""
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    gc.collect()
    started, loop_started = time.process_time(), time.thread_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    process_s, loop_s = time.process_time() - started, time.thread_time() - loop_started
    return process_s / requests * 1e6, loop_s / requests * 1e6


async def measure(
    model_base: Path, args: argparse.Namespace
) -> dict[str, list[tuple[float, float]]]:
    batching = Path(tempfile.mkdtemp(prefix="bench-cost-")) / "batching.config"
    batching.write_text(BATCHING)
    servers = {
        "unbatched": await start_server(model_base),
        "batched": await start_server(
            model_base, "--enable_batching", f"--batching_parameters_file={batching}"
        ),
    }
    calls = {}
    for name, server in servers.items():
        calls[f"grpc_{name}"] = grpc_call(server)
        calls[f"rest_{name}"] = rest_call(server)
    if args.variants:
        calls = {name: calls[name] for name in args.variants.split(",")}
    try:
        for name, call in calls.items():  # warm up (the runner measures its calls), check
            for _ in range(200):
                scores = await call()
            if scores.shape != (10,) or abs(scores.sum() - 1.0) > 1e-3:
                raise SystemExit(f"{name} answered wrongly: {scores}")
        cpu_us: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
        names = list(calls)
        for index in range(args.rounds):
            for name in names if index % 2 == 0 else names[::-1]:
                concurrency = args.concurrency if name.startswith("grpc") else args.rest_concurrency
                cpu_us[name].append(await round_cpu_us(calls[name], args.requests, concurrency))
        return cpu_us
    finally:
        for server in servers.values():
            await server.stop("benchmark finished")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=4000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=64, help="gRPC requests in flight")
    parser.add_argument("--rest_concurrency", type=int, default=32)
    parser.add_argument(
        "--event_loop", choices=EVENT_LOOPS, default="uvloop", help="as the server's flag"
    )
    parser.add_argument(
        "--variants", default="", help="comma-separated, e.g. grpc_batched (default: all four)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from bench.__main__ import ensure_model
    from pyserving.adapters.logging_setup import configure_logging

    configure_logging("json", "warning")
    args.out.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.out)
    cpu_us = run_on_loop(measure(model, args), args.event_loop)
    rows = []
    print(f"\n{'variant':<16}{'cpu us/request':>16}{'min':>8}{'max':>8}{'loop thread':>13}")
    for name, values in cpu_us.items():
        process = [v[0] for v in values]
        loop = [v[1] for v in values]
        median = statistics.median(process)
        rows.append(
            {
                "variant": name,
                "cpu_us_per_request": round(median, 2),
                "loop_thread_cpu_us_per_request": round(statistics.median(loop), 2),
                "rounds_cpu_us": [round(v, 2) for v in process],
            }
        )
        print(
            f"{name:<16}{median:>16.1f}{min(process):>8.1f}{max(process):>8.1f}"
            f"{statistics.median(loop):>13.1f}"
        )
    report = {
        "bench": "request_cost",
        "requests": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "rest_concurrency": args.rest_concurrency,
        "event_loop": args.event_loop,
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out / f"request-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
