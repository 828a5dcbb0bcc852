"""`python -m bench.promotion_gate_latency`: what a running promotion gate costs serving.

A real server (with `--flags`) serves model `m`: version 1 under
label `stable`, and version 2 whose every call first runs `--work` 512x512 matmuls (the
same answers, slower), gated with `--requests` recorded requests. Requests naming
`stable` are sent one after another and timed at the client: first `--baseline` of them
with no gate running, then as many as fit while the gate runs (from the reload that
points `stable` at version 2 until the event log records the verdict). The gate's model
calls run on the load pool and never enter the serving queues, but they share the CPU:
on a machine with spare cores the two phases should match; on a saturated one the gate's
CPU shows. `--max_cpu_share` (the gates file's) makes the gate rest between requests so
its calls take at most that share of one thread. Prints p50/p99 of both phases and the
gate's duration and figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.util.processes import ServerProcess
from tests.util.promotion_models import Scaler, events, export, predict, reload, write_requests


def config(root: Path, stable: int) -> str:
    return (
        f"model_config_list {{ config {{ name: 'm' base_path: '{root}' model_platform: "
        "'tensorflow' model_version_policy { specific { versions: 1 versions: 2 } } "
        f"version_labels {{ key: 'stable' value: {stable} }} }} }}"
    )


def timed_request(server: ServerProcess) -> float:
    started = time.perf_counter()
    answer = predict(server, "m", label="stable")
    elapsed = time.perf_counter() - started
    assert answer.model_spec.version.value == 1, "stable moved: the gate should fail on p99"
    return elapsed


def figures(name: str, latencies: list[float]) -> str:
    ms = np.asarray(latencies) * 1e3
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    return f"{name:14} {len(ms):>6}  {p50:8.3f}  {p99:8.3f}  {ms.max():8.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=int, default=4, help="matmuls per call of version 2")
    parser.add_argument("--requests", type=int, default=200, help="recorded requests gated")
    parser.add_argument("--baseline", type=int, default=500, help="requests with no gate")
    parser.add_argument("--max_cpu_share", type=float, default=0.5, help="the gate's (1: no rest)")
    parser.add_argument(
        "--flags", nargs="*", default=[], help="more `pyserving serve` flags (e.g. threads)"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        export(root / "m" / "1", Scaler(2.0))
        export(root / "m" / "2", Scaler(2.0, work=options.work))
        recorded = write_requests(root / "requests.tfrecord", options.requests)
        gates = root / "gates.toml"
        gates.write_text(
            f'[[gate]]\nmodel = "m"\nlabel = "stable"\nrequests = ["{recorded}"]\n'
            f"max_requests = {options.requests}\np99_ratio = 1.5\ntime_bound_seconds = 600\n"
            f"max_cpu_share = {options.max_cpu_share}\n"
        )
        (root / "models.config").write_text(config(root / "m", 1))
        event_log = root / "events.jsonl"
        server = ServerProcess(
            [
                f"--model_config_file={root / 'models.config'}",
                f"--promotion_gates_file={gates}",
                f"--event_log={event_log}",
                *options.flags,
            ],
            root / "server.log",
        )
        try:
            server.wait_serving(timeout=120)
            for _ in range(50):  # warm the client and the version's callables
                timed_request(server)
            baseline = [timed_request(server) for _ in range(options.baseline)]
            reload(server, config(root / "m", 2))
            during: list[float] = []
            while not any(e["kind"] == "promotion_verdict" for e in events(event_log)):
                during.append(timed_request(server))
            (verdict,) = [e for e in events(event_log) if e["kind"] == "promotion_verdict"]
        finally:
            server.stop()
    print(f"{'phase':14} {'n':>6}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}")
    print(figures("no gate", baseline))
    print(figures("gate running", during))
    outcome = "passed" if verdict["passed"] else "failed"
    print(f"gate: {verdict['duration_s']:.2f}s, {outcome}: {verdict['reason']}")
    for gate in verdict["gates"]:
        print(f"  {gate['gate']}: {gate['figures']}")


if __name__ == "__main__":
    main()
