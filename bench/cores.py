"""`python -m bench.cores`: what front-end processes over one engine buy (issue 32).

For each `--workers` value (`--workers-list`, default 0,2) two servers run on the bench's
digits model, unbatched and `--enable_batching` (bench/h2load.py's batched config), on all
CPUs; h2load is not pinned. Every server's gRPC and REST answers are checked before any
timing. Sections (`--sections`, all by default):
- throughput: h2load gRPC Predict (one image, c=64) and REST `:predict` (`--h1`, c=32),
  rounds interleaved across worker counts (round 1: w0, w2; round 2: w0, w2; ...);
  medians and ratios to workers=0. Under the same load, CPU per request of each kind of
  process from /proc (utime+stime, all threads): the engine's and the front-ends' (their
  sum / requests), and the throughput they imply on 4, 8, 16 and 32 cores (engine bound
  1e6/engine µs, front-end bound (cores-1)·1e6/front-end µs, the lower wins);
- floor: bench/echo_engine.py (the same transport, canned answers, no model) with N
  front-ends started by hand on shared ports, timed at gRPC c=64 in the same rounds; the
  real engine's batched µs/request over the echo engine's (target <= 2);
- latency: p50 at c=1 (gRPC Predict, bench/loadgen.py), unbatched, each worker count
  against workers=0 (target <= 1.5);
- heavy: bench/heavy_model.py batched vs unbatched at c=64 with `--heavy-workers`
  (default 2; target >= 3);
- memory: VmRSS of every engine and front-end at the end of the throughput section
  (target: a front-end <= 150 MiB).
Progress goes to stderr; tables to stdout; JSON to bench/results/cores-<time>.json.
Sections that need h2load are skipped when it is missing (.ci/system-deps installs it).
`python -m bench --cores [...]` runs the same.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.h2load import (
    BATCHING,
    HEAVY_TIMEOUT_US,
    ONE_CPU_SESSION,
    REST_SLOTS,
    batching_config,
    check_answer,
    check_rest_answer,
    cpu_per_request,
    grpc_frame,
    h2load,
    median_run,
    one_image_request,
    session_flags,
)
from bench.report import RESULTS, print_rows, write_results
from bench.targets import Target, free_port, pyserving_target
from tests.util import processes
from tests.util.ipc_echo import ipc_address, spawn_ready
from tests.util.proc_stats import child_pids, cpu_seconds, process_figures
from tests.util.waiting import eventually

FRONTEND_MODULE = "pyserving.api.frontend"
CORES = (4, 8, 16, 32)
GRPC_C, REST_C = 64, 32
SECTIONS = ("throughput", "floor", "latency", "heavy", "memory")
GOALS = {
    "scaling_w2_vs_w0": 1.6,
    "engine_vs_echo_floor": 2.0,
    "p50_c1_vs_w0": 1.5,
    "heavy_batched_vs_unbatched": 3.0,
    "frontend_rss_mib": 150.0,
}


def note(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def implied(engine_us: float, frontend_us: float, cores: int) -> dict[str, Any]:
    """The req/s that CPU costs per request allow on `cores` cores: one engine process can
    use one core (1e6 / engine µs); the front-ends share the rest ((cores - 1) · 1e6 /
    front-end µs). The lower bound wins, and says which side it is."""
    engine = 1e6 / engine_us if engine_us > 0 else math.inf
    frontends = (cores - 1) * 1e6 / frontend_us if frontend_us > 0 else math.inf
    return {
        "cores": cores,
        "req_s": min(engine, frontends),
        "bound": "engine" if engine <= frontends else "front-ends",
    }


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its package is missing too
        return False


def workers_supported() -> bool:
    """Whether this pyserving has front-end processes (`--workers`, issue 32)."""
    return module_exists(FRONTEND_MODULE)


def workers_flags(workers: int) -> list[str]:
    """`--workers=N`; nothing where the flag does not exist yet (then N must be 0)."""
    return [f"--workers={workers}"] if workers_supported() else []


@dataclass
class Server:
    """One server under load: an engine process and its front-ends (none for workers=0,
    the engine's children for `--workers`, or front-ends started by hand)."""

    name: str
    workers: int
    config: str  # unbatched, batched, echo, heavy_unbatched, heavy_batched
    port: int
    rest_port: int | None
    engine: subprocess.Popen[Any] | None = None
    target: Target | None = None  # a pyserving server (its event log, its stop)
    hand_started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def frontends(self) -> list[int]:
        if self.hand_started:
            return [p.pid for p in self.hand_started]
        if not self.workers or self.engine is None:
            return []
        return child_pids(self.engine.pid, FRONTEND_MODULE)

    def cpu(self) -> tuple[float, dict[int, float]]:
        """CPU seconds so far: the engine's, and each front-end's by pid."""
        assert self.engine is not None
        return cpu_seconds(self.engine.pid), {pid: cpu_seconds(pid) for pid in self.frontends()}

    def wait_frontends(self, timeout_s: float = 60.0) -> None:
        """Ready means some front-end answered; wait until all `workers` are there."""
        try:
            eventually(
                lambda: len(self.frontends()) >= self.workers,
                timeout_s,
                0.1,
                lambda: f"{self.name}: {self.workers} front-ends, {len(self.frontends())} up",
            )
        except AssertionError as exc:
            raise SystemExit(str(exc)) from None

    def stop(self) -> None:
        """Front-ends started by hand first; then the engine (SIGTERM: it stops its own
        front-ends), and any of its front-ends still alive after it is killed."""
        for process in self.hand_started:
            processes.stop(process, timeout_s=10)
        children = self.frontends() if self.engine is not None else []
        if self.target is not None:
            self.target.stop()
        elif self.engine is not None and self.engine.poll() is None:
            self.engine.kill()
            self.engine.wait()
        for pid in children:
            try:
                if FRONTEND_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
                    note(f"{self.name}: front-end {pid} outlived its engine; killed")
            except OSError:
                pass  # gone, as it should be


def real_server(workers: int, config: str, model: Path, workdir: Path, flags: list[str]) -> Server:
    rest_port = free_port()
    name = f"w{workers}_{config}"
    target = pyserving_target(
        name,
        f"pyserving --workers={workers}, {config}",
        model,
        workdir,
        *workers_flags(workers),
        f"--rest_api_port={rest_port}",
        REST_SLOTS,
        *flags,
    )
    return Server(name, workers, config, target.port, rest_port, target=target)


def start_real(server: Server) -> None:
    assert server.target is not None
    server.target.start()
    server.engine = server.target.process


def frontend_command(
    module: str, address: str, index: int, port: int, rest_port: int, model: Path
) -> list[str]:
    """A front-end started by hand against the engine at `address` (the server's flags)."""
    return [
        sys.executable, "-m", module, f"--engine_address={address}",
        f"--worker_index={index}", f"--port={port}", f"--rest_api_port={rest_port}",
        "--model_name=mnist", f"--model_base_path={model}", REST_SLOTS, "--log_level=warning",
    ]  # fmt: skip


def start_echo_floor(
    address: str, workers: int, model: Path, workdir: Path, module: str = FRONTEND_MODULE
) -> Server:
    """bench/echo_engine.py on `address` and `workers` front-ends (`module`) started by
    hand on one pair of ports; gRPC only is timed (so `rest_port` is not checked)."""
    port, rest_port = free_port(), free_port()
    server = Server(f"w{workers}_echo", workers, "echo", port, None)
    server.engine = spawn_ready([sys.executable, "-m", "bench.echo_engine", address])
    for index in range(workers):
        command = frontend_command(module, address, index, port, rest_port, model)
        log = workdir / f"echo_frontend_{index}.log"
        server.hand_started.append(processes.spawn(command, log))
    return server


def wait_and_check(server: Server, request: Any, rest_body: bytes | None) -> None:
    """Ready, every front-end up, and right answers over gRPC and REST (several
    connections, so that SO_REUSEPORT spreads them over the front-ends)."""
    process = server.hand_started[0] if server.hand_started else server.engine
    assert process is not None
    processes.wait_serving(server.address, process, 180, lambda: f"{server.name} not ready")
    server.wait_frontends()
    target = Target(server.name, "", [], server.port, Path(os.devnull))
    for _ in range(max(1, 2 * server.workers)):
        check_answer(target, request)
        if rest_body is not None and server.rest_port is not None:
            check_rest_answer(f"127.0.0.1:{server.rest_port}", rest_body, server.name)


def timed(
    server: Server, protocol: str, body: Path, seconds: float, workdir: Path
) -> dict[str, Any]:
    """One h2load run against `server`, with each kind of process's CPU µs per request."""
    rest = protocol == "rest"
    address = f"127.0.0.1:{server.rest_port}" if rest else server.address
    engine_before, frontends_before = server.cpu()
    begin = time.time()
    result = h2load(
        address,
        body,
        REST_C if rest else GRPC_C,
        seconds,
        workdir / f"{server.name}_{protocol}.h2",
        rest=rest,
        cpu=None,
    )
    end = time.time()
    engine_after, frontends_after = server.cpu()
    if result["http_2xx"] == 0:
        raise SystemExit(f"{server.name} {protocol}: no successful request")
    per_frontend = [
        cpu_per_request(frontends_after[pid] - frontends_before[pid], result, seconds)
        for pid in sorted(frontends_before)
        if pid in frontends_after
    ]
    result["engine_us"] = cpu_per_request(engine_after - engine_before, result, seconds)
    result["frontend_us"] = round(sum(per_frontend), 1)
    result["per_frontend_us"] = per_frontend
    result["frontends_replaced"] = sorted(frontends_before) != sorted(frontends_after)
    result["cpu_us_per_request"] = round(result["engine_us"] + result["frontend_us"], 1)
    if server.target is not None:
        batch = server.target.mean_batch((begin, end))
        if batch is not None:
            result["mean_batch"] = round(batch, 2)
    return result


def interleaved(
    jobs: list[tuple[Server, str, Path]], rounds: int, seconds: float, workdir: Path
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every job once a round, rounds in turn; the median run of each (server, protocol)."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for index in range(rounds):
        for server, protocol, body in jobs:
            result = timed(server, protocol, body, seconds, workdir)
            runs.setdefault((server.name, protocol), []).append(result)
            note(
                f"round {index + 1}/{rounds} {server.name} {protocol}: {result['req_s']:.0f} "
                f"req/s, engine {result['engine_us']:.0f} µs/req, front-ends "
                f"{result['frontend_us']:.0f} µs/req"
            )
    medians = ("cpu_us_per_request", "engine_us", "frontend_us")
    return {key: median_run(results, medians) for key, results in runs.items()}


def throughput_rows(
    servers: list[Server], results: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for server in servers:
        for protocol in ("grpc", "rest"):
            result = results.get((server.name, protocol))
            if result is None:
                continue
            base = results.get((f"w0_{server.config}", protocol))
            costs = [implied(result["engine_us"], result["frontend_us"], n) for n in CORES]
            rows.append(
                {
                    "server": server.name,
                    "workers": server.workers,
                    "config": server.config,
                    "protocol": protocol,
                    "concurrency": REST_C if protocol == "rest" else GRPC_C,
                    **result,
                    "vs_w0": round(result["req_s"] / base["req_s"], 3) if base else None,
                    "implied": costs,
                }
            )
    return rows


def print_throughput(rows: list[dict[str, Any]]) -> None:
    print("\nthroughput (h2load, medians of the rounds; ratio to workers=0 of the same config)")
    print_rows(
        [{**r, "vs_w0": "-" if r["vs_w0"] is None else f"{r['vs_w0']:.2f}"} for r in rows],
        [
            ("server", "server", ""),
            ("protocol", "proto", ""),
            ("concurrency", "c", "d"),
            ("req_s", "req/s", ".0f"),
            ("vs_w0", "x w0", ""),
            ("p50_ms", "p50 ms", ".2f"),
            ("p99_ms", "p99 ms", ".2f"),
        ],
    )
    print("\nCPU per request by kind of process (/proc utime+stime, all threads), and the")
    print("req/s it implies on N cores: min(1e6/engine µs, (N-1)·1e6/front-end µs)")
    table = []
    for r in rows:
        row = {
            "server": r["server"],
            "protocol": r["protocol"],
            "engine": f"{r['engine_us']:.0f}",
            "frontends": f"{r['frontend_us']:.0f}" if r["workers"] else "-",
            "each": " ".join(f"{u:.0f}" for u in r["per_frontend_us"]) or "-",
            "batch": f"{r['mean_batch']:.1f}" if "mean_batch" in r else "-",
        }
        for cost in r["implied"]:
            side = "single process" if not r["workers"] else cost["bound"]
            row[str(cost["cores"])] = f"{cost['req_s']:.0f} ({side[0].upper()})"
        table.append(row)
    print_rows(
        table,
        [
            ("server", "server", ""),
            ("protocol", "proto", ""),
            ("engine", "engine µs", ""),
            ("frontends", "front-ends µs", ""),
            ("each", "each front-end µs", ""),
            ("batch", "batch", ""),
            *((str(n), f"{n} cores", "") for n in CORES),
        ],
    )
    print("(E) engine-bound, (F) front-end-bound, (S) one process does everything")
    uneven = [
        r["server"]
        for r in rows
        if r["per_frontend_us"] and min(r["per_frontend_us"]) < 0.25 * max(r["per_frontend_us"])
    ]
    if uneven:
        print(f"note: the load reached some front-ends far less than others on {uneven}")


def floor_ratio(
    rows: list[dict[str, Any]], echo: dict[str, Any] | None, workers: int
) -> dict[str, Any] | None:
    """The real engine's CPU per request (batched, gRPC c=64, same front-end count) over
    the echo engine's."""
    real = next(
        (r for r in rows if r["server"] == f"w{workers}_batched" and r["protocol"] == "grpc"),
        None,
    )
    if echo is None or real is None or not echo["engine_us"]:
        return None
    return {
        "workers": workers,
        "engine_us": real["engine_us"],
        "echo_engine_us": echo["engine_us"],
        "echo_frontend_us": echo["frontend_us"],
        "echo_req_s": echo["req_s"],
        "ratio": round(real["engine_us"] / echo["engine_us"], 3),
    }


async def latency_runs(
    servers: list[Server], rounds: int, seconds: float
) -> dict[str, dict[str, Any]]:
    """p50 at c=1 of each server (bench/loadgen.py), rounds interleaved; medians."""
    from bench.__main__ import test_images
    from bench.loadgen import LoadSpec, predict_requests, run_load

    requests = predict_requests(test_images()[:256])
    spec = LoadSpec(concurrency=1, duration_s=seconds, warmup_s=1.0, max_requests=10**6)
    p50s: dict[str, list[float]] = {s.name: [] for s in servers}
    p99s: dict[str, list[float]] = {s.name: [] for s in servers}
    for index in range(rounds):
        for server in servers:
            result = await run_load(server.address, requests, spec)
            if result.errors:
                raise SystemExit(f"{server.name} at c=1: errors {result.errors}")
            p50s[server.name].append(result.percentile_ms(50))
            p99s[server.name].append(result.percentile_ms(99))
            p50 = p50s[server.name][-1]
            note(f"round {index + 1}/{rounds} {server.name} c=1: p50 {p50:.3f} ms")
    return {
        s.name: {
            "workers": s.workers,
            "p50_ms": statistics.median(p50s[s.name]),
            "p99_ms": statistics.median(p99s[s.name]),
            "rounds_p50_ms": p50s[s.name],
        }
        for s in servers
    }


def memory_rows(servers: list[Server]) -> list[dict[str, Any]]:
    rows = []
    for server in servers:
        if server.engine is None or server.engine.poll() is not None:
            continue
        kinds = [("engine" if server.workers else "single", server.engine.pid)]
        kinds += [(f"front-end {i}", pid) for i, pid in enumerate(server.frontends())]
        for kind, pid in kinds:
            figures = process_figures(pid)
            rows.append(
                {"server": server.name, "process": kind, "pid": pid,
                 "rss_mib": round(figures.rss_mib, 1), "threads": figures.threads}
            )  # fmt: skip
    return rows


def measure_heavy(
    args: argparse.Namespace, workdir: Path, request: Any, body: Path, session: list[str]
) -> dict[str, Any]:
    from bench.heavy_model import export

    model = export(args.out, args.heavy_width)
    batching = workdir / "heavy_batching.config"
    batching.write_text(batching_config(HEAVY_TIMEOUT_US))
    workers = args.heavy_workers
    batched_flags = ["--enable_batching", f"--batching_parameters_file={batching}"]
    servers = [
        real_server(workers, config, model, workdir, [*flags, *session])
        for config, flags in (("heavy_unbatched", []), ("heavy_batched", batched_flags))
    ]
    try:
        for server in servers:
            start_real(server)
        for server in servers:
            wait_and_check(server, request, None)  # gRPC only, as timed
        results = interleaved(
            [(s, "grpc", body) for s in servers], args.rounds, args.seconds, workdir
        )
    finally:
        for server in servers:
            server.stop()
    unbatched, batched = (results[s.name, "grpc"] for s in servers)
    rows = [{"server": s.name, **results[s.name, "grpc"]} for s in servers]
    print(f"\nheavy MLP ({args.heavy_width} wide), --workers={workers}, gRPC c={GRPC_C}")
    print_rows(
        [{**r, "batch": f"{r.get('mean_batch', 1):.1f}"} for r in rows],
        [
            ("server", "server", ""),
            ("req_s", "req/s", ".0f"),
            ("p50_ms", "p50 ms", ".2f"),
            ("p99_ms", "p99 ms", ".2f"),
            ("batch", "batch", ""),
            ("engine_us", "engine µs", ".0f"),
            ("frontend_us", "front-ends µs", ".0f"),
        ],
    )
    ratio = round(batched["req_s"] / unbatched["req_s"], 3)
    print(f"batched / unbatched = {ratio:.2f} (target >= {GOALS['heavy_batched_vs_unbatched']:g})")
    return {"workers": workers, "width": args.heavy_width, "rows": rows, "ratio": ratio}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cores",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workers-list",
        default="0,2",
        help="worker counts to compare, 0 first (default %(default)s; on a 16-core machine, "
        "say 0,2,4,8,14)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per run")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="which sections to run, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--floor-workers",
        type=int,
        help="front-ends over the echo engine (default: the largest count of --workers-list)",
    )
    parser.add_argument(
        "--frontend-module",
        default=FRONTEND_MODULE,
        help="the front-end the echo floor starts by hand (default %(default)s)",
    )
    parser.add_argument("--heavy-workers", type=int, default=2, help="--workers of the heavy runs")
    parser.add_argument("--heavy-width", type=int, default=None, help="the heavy MLP's width")
    parser.add_argument(
        "--tf-default-threads",
        action="store_true",
        help="TensorFlow's default thread pools, not ops in the calling thread",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers_list.split(",")]
    if args.workers[0] != 0:
        parser.error("--workers-list starts with 0: every ratio is to workers=0")
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.floor_workers is None:
        args.floor_workers = max(args.workers) or 2
    if args.heavy_width is None:
        from bench.heavy_model import WIDTH

        args.heavy_width = WIDTH
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    skipped: dict[str, str] = {}
    asked = list(args.workers)
    has_h2load = shutil.which("h2load") is not None
    if not has_h2load:
        for section in ("throughput", "floor", "heavy"):
            skipped[section] = "h2load not found (.ci/system-deps installs nghttp2-client)"
    if not workers_supported():
        reason = f"no {FRONTEND_MODULE} in this pyserving: --workers does not exist yet"
        if any(args.workers[1:]):
            note(f"only workers=0 is measured: {reason}")
            args.workers = [0]
        if args.heavy_workers:
            skipped.setdefault("heavy", reason)
    if not module_exists(args.frontend_module):
        skipped.setdefault("floor", f"no front-end module {args.frontend_module}")
    for section in SECTIONS:
        if section not in args.sections:
            skipped.setdefault(section, "not asked for (--sections)")
    for section, reason in skipped.items():
        if section in args.sections:
            print(f"skipping {section}: {reason}")
    run = [s for s in SECTIONS if s not in skipped]

    from bench.__main__ import ensure_model, test_images

    args.out.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.out)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cores-"))
    image = test_images()[0]
    request = one_image_request(image)
    body = workdir / "predict.grpc"
    body.write_bytes(grpc_frame(request.SerializeToString()))
    rest_body = workdir / "predict.json"
    rest_body.write_text(json.dumps({"instances": [image.tolist()]}))
    batching = workdir / "batching.config"
    batching.write_text(BATCHING)
    session = session_flags(*((0, 0) if args.tf_default_threads else ONE_CPU_SESSION))
    configs = {
        "unbatched": session,
        "batched": ["--enable_batching", f"--batching_parameters_file={batching}", *session],
    }
    report: dict[str, Any] = {
        "tool": "cores",
        "machine": {"cpus": os.cpu_count()},
        "settings": {
            "workers": args.workers,
            "workers_asked": asked,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "grpc_concurrency": GRPC_C,
            "rest_concurrency": REST_C,
            "serve_flags": session,
            "rest_slots_flag": REST_SLOTS,
            "h2load_pinned": False,
        },
        "goals": GOALS,
        "skipped": skipped,
    }
    servers: list[Server] = []
    echo: Server | None = None
    needs_servers = {"throughput", "latency", "memory", "floor"} & set(run)
    try:
        with ipc_address() as echo_address:
            if needs_servers:
                servers = [
                    real_server(w, config, model, workdir, flags)
                    for w in args.workers
                    for config, flags in configs.items()
                ]
                note(f"starting {len(servers)} servers: {[s.name for s in servers]}")
                for server in servers:
                    start_real(server)
                if "floor" in run:
                    echo = start_echo_floor(
                        echo_address, args.floor_workers, model, workdir, args.frontend_module
                    )
                for server in [*servers, *([echo] if echo else [])]:
                    wait_and_check(server, request, rest_body.read_bytes())
                note(f"all servers answer right after {time.time() - started:.0f} s")
            results: dict[tuple[str, str], dict[str, Any]] = {}
            if "throughput" in run or "floor" in run:
                jobs = []
                for config in configs:
                    for protocol, payload in (("grpc", body), ("rest", rest_body)):
                        for s in servers:
                            floor_peer = echo is not None and s.workers == args.floor_workers
                            if s.config == config and (
                                "throughput" in run
                                or (floor_peer and (config, protocol) == ("batched", "grpc"))
                            ):
                                jobs.append((s, protocol, payload))
                        if echo is not None and (config, protocol) == ("batched", "grpc"):
                            jobs.append((echo, "grpc", body))
                results = interleaved(jobs, args.rounds, args.seconds, workdir)
            rows = throughput_rows(servers, results)
            if rows:
                print_throughput(rows)
                report["throughput"] = rows
                scaling = {
                    f"{r['server']}_{r['protocol']}": r["vs_w0"] for r in rows if r["workers"]
                }
                report["scaling_vs_w0"] = scaling
                goal = GOALS["scaling_w2_vs_w0"]
                for name, ratio in scaling.items():
                    print(f"{name} / w0: {ratio:.2f} (target for w2 >= {goal:g})")
            if echo is not None:
                echoed = results[echo.name, "grpc"]
                floor = floor_ratio(rows, echoed, args.floor_workers)
                report["floor"] = {"echo": echoed, "ratio": floor}
                print(
                    f"\necho engine, gRPC c={GRPC_C}, {args.floor_workers} front-ends "
                    f"({args.frontend_module}): {echoed['req_s']:.0f} req/s, engine "
                    f"{echoed['engine_us']:.0f} µs/req, front-ends {echoed['frontend_us']:.0f} "
                    f"µs/req (each: {' '.join(f'{u:.0f}' for u in echoed['per_frontend_us'])})"
                )
                if floor is None:
                    print(f"no w{args.floor_workers}_batched server to set against the floor")
                else:
                    print(
                        f"\nengine floor, gRPC c={GRPC_C}, {args.floor_workers} front-ends: echo "
                        f"engine {floor['echo_engine_us']:.0f} µs/req ({floor['echo_req_s']:.0f} "
                        f"req/s, front-ends {floor['echo_frontend_us']:.0f} µs/req); real engine "
                        f"batched {floor['engine_us']:.0f} µs/req; ratio {floor['ratio']:.2f} "
                        f"(target <= {GOALS['engine_vs_echo_floor']:g})"
                    )
            if "latency" in run:
                unbatched = [s for s in servers if s.config == "unbatched"]
                latency = asyncio.run(latency_runs(unbatched, args.rounds, args.seconds))
                base = latency["w0_unbatched"]["p50_ms"]
                for entry in latency.values():
                    entry["vs_w0"] = round(entry["p50_ms"] / base, 3)
                print("\nlatency at c=1, gRPC Predict, unbatched (bench/loadgen.py, medians)")
                print_rows(
                    [{"server": k, **v} for k, v in latency.items()],
                    [
                        ("server", "server", ""),
                        ("p50_ms", "p50 ms", ".3f"),
                        ("p99_ms", "p99 ms", ".3f"),
                        ("vs_w0", "p50 x w0", ".2f"),
                    ],
                )
                print(f"(target: p50 with workers=2 <= {GOALS['p50_c1_vs_w0']:g} x workers=0)")
                report["latency"] = latency
            if "memory" in run:
                memory = memory_rows([*servers, *([echo] if echo else [])])
                print("\nmemory at the end of the run (VmRSS)")
                print_rows(
                    memory,
                    [
                        ("server", "server", ""),
                        ("process", "process", ""),
                        ("rss_mib", "RSS MiB", ".1f"),
                        ("threads", "threads", "d"),
                    ],
                )
                frontends = [r["rss_mib"] for r in memory if r["process"].startswith("front")]
                if frontends:
                    print(
                        f"largest front-end: {max(frontends):.1f} MiB (target <= "
                        f"{GOALS['frontend_rss_mib']:g})"
                    )
                report["memory"] = memory
    finally:
        for server in [*servers, *([echo] if echo else [])]:
            server.stop()
    if "heavy" in run:
        note("the heavy model's servers")
        report["heavy"] = measure_heavy(args, workdir, request, body, session)
    report["elapsed_s"] = round(time.time() - started, 1)
    report["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_results(f"cores-{time.strftime('%Y%m%d-%H%M%S')}", report, args.out)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
