"""REST vs gRPC Predict on one real server: requests/s and p99 latency, side by side.

    python -m bench.rest_bench [--seconds=5] [--concurrency=10,64] [--batch=1]

Exports the tutorial's MNIST model, starts one `pyserving serve` with `--rest_api_port`,
and drives it with one closed-loop load generator (asyncio: `concurrency` workers, each
sending its next request when the last one answered) for each protocol and concurrency,
alternating gRPC and REST so both see the same machine state. Both requests are built
once and resent: the gRPC client is grpc.aio with a prebuilt PredictRequest; the REST
client is aiohttp POSTing `{"instances": [[...64 floats...]]}` to
`/v1/models/mnist:predict`. Both answers are checked equal before timing. The load
generator runs in this process, so on a small machine it competes with the server for
CPU: compare the ratio, not the absolute numbers. Prints a table and writes JSON to
bench/results/rest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from tests.util import processes
from tests.util.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def export_model(folder: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mnist_saved_model.py"),
         "--training_iteration=100", str(folder)],
        check=True, capture_output=True, env=ENV, timeout=600,
    )  # fmt: skip


def start_server(models: Path, grpc_port: int, rest_port: int) -> subprocess.Popen[bytes]:
    return processes.spawn(
        processes.serve_command(
            grpc_port, f"--rest_api_port={rest_port}", "--model_name=mnist",
            f"--model_base_path={models}", "--file_system_poll_wait_seconds=0",
            "--log_level=warning",
        )
    )  # fmt: skip


Call = Callable[[], Awaitable[np.ndarray]]


async def load(call: Call, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed loop: `concurrency` workers for `seconds`; latencies of finished requests."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    }


async def run(args: argparse.Namespace, grpc_port: int, rest_port: int) -> list[dict]:
    import aiohttp
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    images = np.random.default_rng(0).random((args.batch, 64), dtype=np.float32)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    url = f"http://127.0.0.1:{rest_port}/v1/models/mnist:predict"
    body = json.dumps({"signature_name": "predict_images", "instances": images.tolist()})
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)

    request = predict_pb2.PredictRequest()  # built once, as the REST body is
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))

    async def grpc_call() -> np.ndarray:
        reply = await stub.Predict(request, timeout=30)
        return np.array(reply.outputs["scores"].float_val, np.float32)

    async def rest_call() -> np.ndarray:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as reply:
            if reply.status != 200:
                raise RuntimeError(await reply.text())
            return np.array((await reply.json())["predictions"], np.float32).ravel()

    np.testing.assert_array_equal(await grpc_call(), await rest_call())
    await load(grpc_call, 4, 1.0)  # warm both paths
    await load(rest_call, 4, 1.0)
    rows = []
    for concurrency in args.concurrency:
        for protocol, call in (("grpc", grpc_call), ("rest", rest_call)):
            result = await load(call, concurrency, args.seconds)
            rows.append({"protocol": protocol, "concurrency": concurrency, **result})
            print(f"  {protocol:4} c={concurrency:<3} {result['rps']:8.0f} req/s", flush=True)
    await session.close()
    await channel.close()
    return rows


def wait_ready(rest_port: int, timeout: float = 180) -> None:
    import urllib.request

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/readyz", timeout=2) as r:
            return r.status == 200

    try:
        eventually(ready, timeout, 0.2, "the server's /readyz", (OSError,))
    except AssertionError as exc:
        raise SystemExit(f"server not ready: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell (default: 5)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 64],
        help="comma-separated client concurrencies (default: 10,64)",
    )
    parser.add_argument("--batch", type=int, default=1, help="images per request (default: 1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rest-bench-") as tmp:
        models = Path(tmp) / "mnist"
        export_model(models)
        grpc_port, rest_port = processes.free_port(), processes.free_port()
        server = start_server(models, grpc_port, rest_port)
        try:
            wait_ready(rest_port)
            rows = asyncio.run(run(args, grpc_port, rest_port))
        finally:
            processes.stop(server)
    print()
    print(f"{'concurrency':>11} {'protocol':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'REST/gRPC req/s':>16} {'REST/gRPC p99':>14}")  # fmt: skip
    by_key = {(r["protocol"], r["concurrency"]): r for r in rows}
    for r in rows:
        g = by_key[("grpc", r["concurrency"])]
        ratio = (
            f"{r['rps'] / g['rps']:16.2f} {r['p99_ms'] / g['p99_ms']:14.2f}"
            if r["protocol"] == "rest"
            else f"{'':16} {'':14}"
        )
        print(f"{r['concurrency']:>11} {r['protocol']:>8} {r['rps']:8.0f} {r['p50_ms']:8.2f} "
              f"{r['p99_ms']:8.2f} {r['errors']:>6} {ratio}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "rest.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "seconds_per_cell": args.seconds,
                "batch": args.batch,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
