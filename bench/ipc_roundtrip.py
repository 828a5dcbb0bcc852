"""The data-plane transport's own cost: round trips between a front-end and an echo engine.

`python -m bench.ipc_roundtrip [--seconds=3] [--rounds=3] [--event_loop=uvloop|asyncio]
[--no-sizes]` runs this process as the front-end (pyserving.adapters.ipc.EngineClient) and
two engine processes over ipc:// sockets:
- `endpoint`: EngineEndpoint with tests/util/ipc_echo.py's handler (a task per request,
  deadlines, error replies): the transport the engine will serve with;
- `bare`: a synchronous pyzmq ROUTER loop that decodes the same Request header and sends
  the tensors back (no asyncio, no tasks): the floor of this message format on pyzmq.
Each request is what a Predict carries: a small header (model, signature, output filter)
and one 64-float tensor. Closed loop at c=1 and c=64, rounds interleaved, medians shown:
req/s, p50 ms, the engine process's CPU µs per request (user + system from /proc, zmq's I/O
thread included) and this process's (the client side, load loop included).

The size sweep then times one echo of a float64 tensor at c=1, sent as frames or through
shared memory (the reply comes back as frames either way), to place SHM_THRESHOLD.
Writes bench/results/ipc_roundtrip.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.report import print_rows, write_results
from pyserving.adapters.ipc import SHM_THRESHOLD, ClientOptions, EngineClient
from pyserving.api.serving_loop import EVENT_LOOPS, run_on_loop
from tests.util.ipc_echo import spawn_echo_engine, spawn_ready
from tests.util.proc_stats import cpu_seconds

PARAMS = {"model": "mnist", "version": None, "signature": "predict_images", "filter": []}
TENSORS = {"images": np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)}
LEVELS = (1, 64)
SIZES = (16 << 10, 64 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20, 16 << 20)  # bytes


def bare_engine(address: str) -> None:
    """The floor: decode the header, answer with the same tensors, nothing else."""
    import zmq

    from pyserving.adapters.ipc.messages import ENCODER, OK, REQUESTS_DECODER, Reply

    socket = zmq.Context().socket(zmq.ROUTER)
    socket.bind(address)
    print("ready", flush=True)
    while True:
        frames = socket.recv_multipart(copy=False)
        requests = REQUESTS_DECODER.decode(frames[1].buffer)
        replies = [Reply(r.id, OK, "", {}, r.tensors, r.frames) for r in requests]
        socket.send_multipart([frames[0], ENCODER.encode(replies), *frames[2:]], copy=False)


async def closed_loop(
    client: EngineClient,
    concurrency: int,
    seconds: float,
    tensors: Mapping[str, np.ndarray],
    engine_pid: int,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    stop = loop.time() + seconds

    async def worker() -> None:
        while loop.time() < stop:
            started = time.perf_counter()
            await client.call("echo", PARAMS, tensors, timeout_s=10)
            latencies.append(time.perf_counter() - started)

    engine_cpu, own_cpu, began = cpu_seconds(engine_pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    requests = len(latencies)
    return {
        "req_s": requests / wall,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "engine_cpu_us": (cpu_seconds(engine_pid) - engine_cpu) / requests * 1e6,
        "client_cpu_us": (time.process_time() - own_cpu) / requests * 1e6,
        "requests": requests,
    }


async def echo_ms(
    client: EngineClient, array: np.ndarray, repeats: int, engine_pid: int
) -> dict[str, float]:
    """Median ms of one echo of `array`, and each side's CPU µs per echo."""
    times = []
    engine_cpu, own_cpu = cpu_seconds(engine_pid), time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        answer = await client.call("echo", {}, {"x": array}, timeout_s=30)
        times.append(time.perf_counter() - started)
    assert answer.tensors["x"].shape == array.shape
    return {
        "ms": statistics.median(times) * 1e3,
        "engine_us": (cpu_seconds(engine_pid) - engine_cpu) / repeats * 1e6,
        "client_us": (time.process_time() - own_cpu) / repeats * 1e6,
    }


async def measure(
    args: argparse.Namespace, addresses: dict[str, str], pids: dict[str, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    clients = {}
    for name, address in addresses.items():
        clients[name] = EngineClient(address)
        await clients[name].connect()
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for name, client in clients.items():  # warm up
            if args.rounds:
                await closed_loop(client, 64, 0.5, TENSORS, pids[name])
        for index in range(args.rounds):
            names = list(clients) if index % 2 == 0 else list(clients)[::-1]
            for name in names:
                for level in LEVELS:
                    result = await closed_loop(
                        clients[name], level, args.seconds, TENSORS, pids[name]
                    )
                    samples.setdefault((name, level), []).append(result)
            print(f"round {index + 1}/{args.rounds}", file=sys.stderr)
        sweep = await size_sweep(addresses["endpoint"], pids["endpoint"]) if args.sizes else []
    finally:
        for client in clients.values():
            await client.close()
    rows = []
    for (name, level), runs in samples.items():
        row: dict[str, Any] = {"engine": name, "concurrency": level}
        for key in runs[0]:
            row[key] = statistics.median(run[key] for run in runs)
        rows.append(row)
    return rows, sweep


async def size_sweep(address: str, engine_pid: int) -> list[dict[str, Any]]:
    frames = EngineClient(address, ClientOptions(shm_threshold=None))
    shared = EngineClient(address, ClientOptions(shm_threshold=1))
    await frames.connect()
    await shared.connect()
    rows = []
    try:
        for size in SIZES:
            array = np.random.default_rng(0).random(size // 8)
            repeats = max(20, min(200, (256 << 20) // size))
            await echo_ms(frames, array, 3, engine_pid)
            await echo_ms(shared, array, 3, engine_pid)  # the segment exists, pages mapped
            by_mode: dict[str, list[dict[str, float]]] = {"frames": [], "shm": []}
            for index in range(5):  # interleaved
                order = [("frames", frames), ("shm", shared)]
                for mode, client in order if index % 2 == 0 else order[::-1]:
                    by_mode[mode].append(await echo_ms(client, array, repeats, engine_pid))
            row: dict[str, Any] = {"bytes": size}
            for mode, runs in by_mode.items():
                for key in runs[0]:
                    row[f"{mode}_{key}"] = statistics.median(run[key] for run in runs)
            row["shm_vs_frames"] = row["shm_ms"] / row["frames_ms"]
            rows.append(row)
            print(f"size {size}: {row}", file=sys.stderr)
    finally:
        await frames.close()
        await shared.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--event_loop", choices=EVENT_LOOPS, default="uvloop")
    parser.add_argument("--no-sizes", dest="sizes", action="store_false")
    parser.add_argument("--bare-engine", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_engine:
        bare_engine(args.bare_engine)
        return
    folder = tempfile.mkdtemp(prefix="ipc-bench-", dir="/tmp")
    addresses = {"endpoint": f"ipc://{folder}/endpoint", "bare": f"ipc://{folder}/bare"}
    engines = {
        "endpoint": spawn_echo_engine(addresses["endpoint"], args.event_loop),
        "bare": spawn_ready(
            [sys.executable, "-m", "bench.ipc_roundtrip", f"--bare-engine={addresses['bare']}"]
        ),
    }
    try:
        rows, sweep = run_on_loop(
            measure(args, addresses, {n: p.pid for n, p in engines.items()}), args.event_loop
        )
    finally:
        for process in engines.values():
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
    if rows:
        print()
        print_rows(
            rows,
            [
                ("engine", "engine", ""),
                ("concurrency", "conc", "d"),
                ("req_s", "req/s", ".0f"),
                ("p50_ms", "p50 ms", ".3f"),
                ("p99_ms", "p99 ms", ".3f"),
                ("engine_cpu_us", "engine µs/req", ".1f"),
                ("client_cpu_us", "client µs/req", ".1f"),
            ],
        )
    if sweep:
        print()
        print(f"one echo at c=1, frames vs shared memory (SHM_THRESHOLD = {SHM_THRESHOLD} B):")
        print_rows(
            sweep,
            [
                ("bytes", "bytes", "d"),
                ("frames_ms", "frames ms", ".3f"),
                ("shm_ms", "shm ms", ".3f"),
                ("shm_vs_frames", "shm/frames", ".2f"),
                ("frames_client_us", "frames client µs", ".0f"),
                ("shm_client_us", "shm client µs", ".0f"),
                ("frames_engine_us", "frames engine µs", ".0f"),
                ("shm_engine_us", "shm engine µs", ".0f"),
            ],
        )
    write_results(
        "ipc_roundtrip",
        {
            "settings": {
                "seconds": args.seconds,
                "rounds": args.rounds,
                "event_loop": args.event_loop,
                "tensor": "float32 (1, 64)",
                "params": PARAMS,
            },
            "rows": rows,
            "sizes": sweep,
            "shm_threshold": SHM_THRESHOLD,
        },
    )


if __name__ == "__main__":
    main()
