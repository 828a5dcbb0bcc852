"""How long `pyserving replay` takes on a 1,000,000-event log, for several event mixes.

    python -m bench.replay_bench [--events=1000000] [--lifecycle=1.0,0.1,0.01]

Each mix is a log of `--events` events written as the server writes them: one
ServerStarted header, then version swaps (aspired versions, load result, unload
result, and the four transitions the availability policy decides; 7 events a swap,
spread over models of ~40 versions each) mixed with BatchRun events (the traffic
record, one per batch) in the given lifecycle fraction, then a clean stop. Replay reads
the file, verifies every transition with a fresh manager and builds the timeline, as
the command does (the report rendering is excluded: it is proportional to the versions
shown, not to the log). Prints a table (wall and CPU seconds: on a shared machine the
CPU time is the fairer figure) and writes bench/results/replay_bench.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from pyserving.adapters.event_log import log_files, read_log_set
from pyserving.engine.replay import SKIMMED, replay

RESULTS = Path(__file__).resolve().parent / "results"
VERSIONS_PER_MODEL = 40
SWAP_EVENTS = 7


def _line(seq: int, t: float, kind: str, body: str) -> str:
    return f'{{"seq":{seq},"time":{t:.6f},"kind":"{kind}",{body}}}\n'


def _transition(model: str, version: int, src: str, dst: str, trigger: str, reason: str) -> str:
    return (
        f'"model":"{model}","version":{version},"src":"{src}","dst":"{dst}",'
        f'"trigger":"{trigger}","reason":"{reason}"'
    )


def write_log(path: Path, events: int, lifecycle_fraction: float) -> dict[str, int]:
    """Write a log the way the server would have (same lines, same decisions)."""
    swaps = max(1, int(events * lifecycle_fraction) // SWAP_EVENTS)
    models = max(1, swaps // VERSIONS_PER_MODEL)
    batches_per_swap = events * (1 - lifecycle_fraction) / swaps
    seq = 0
    now = 1_700_000_000.0
    lines: list[str] = []
    counts = {"transition": 0, "batch_run": 0, "fact": 0}

    def emit(kind: str, body: str) -> None:
        nonlocal seq, now
        seq += 1
        now += 0.001
        lines.append(_line(seq, now, kind, body))
        if kind == "transition":
            counts["transition"] += 1
        elif kind == "batch_run":
            counts["batch_run"] += 1
        else:
            counts["fact"] += 1

    emit(
        "server_started",
        '"pyserving_version":"bench","flags":{"aspired_version_policy":"availability",'
        '"max_num_load_retries":0},"models":[]',
    )
    serving: dict[str, int] = {}
    owed_batches = 0.0
    with open(path, "w") as f:
        for swap in range(swaps):
            model = f"model-{swap % models}"
            old = serving.get(model)
            new = (old or 0) + 1
            serving[model] = new
            emit(
                "aspired_versions",
                f'"model":"{model}","versions":[{{"version":{new},"path":"/m/{new}"}}],'
                '"source":"file_system"',
            )
            emit(
                "transition",
                _transition(
                    model, new, "new", "loading", "start_load", "aspired; availability policy"
                ),
            )
            emit("load_succeeded", f'"model":"{model}","version":{new},"duration_s":0.5')
            emit(
                "transition",
                _transition(
                    model, new, "loading", "available", "load_succeeded", "loaded in 0.500s"
                ),
            )
            if old is not None:
                emit(
                    "transition",
                    _transition(
                        model,
                        old,
                        "available",
                        "unloading",
                        "start_unload",
                        "no longer aspired; availability policy",
                    ),
                )
                emit("unload_finished", f'"model":"{model}","version":{old},"duration_s":0.1')
                emit(
                    "transition",
                    _transition(
                        model, old, "unloading", "end", "unload_finished", "unloaded in 0.100s"
                    ),
                )
                owed_batches += batches_per_swap
            while owed_batches >= 1 and seq < events - 1:
                owed_batches -= 1
                emit(
                    "batch_run",
                    f'"model":"{model}","version":{new},"signature":"serving_default",'
                    '"size":8,"padded_size":8,"oldest_wait_s":0.001',
                )
            if len(lines) > 10_000:
                f.writelines(lines)
                lines.clear()
        while seq < events - 1:
            emit(
                "batch_run",
                '"model":"model-0","version":1,"signature":"serving_default","size":8,'
                '"padded_size":8,"oldest_wait_s":0.001',
            )
        emit("server_stopped", '"reason":"bench"')
        f.writelines(lines)
    return {"events": seq, "models": models, **counts}


def run(events: int, fractions: list[float]) -> list[dict[str, object]]:
    rows = []
    with TemporaryDirectory() as folder:
        for fraction in fractions:
            log = Path(folder) / f"events-{fraction}.jsonl"
            shape = write_log(log, events, fraction)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = replay(read_log_set(log_files([log]), skim=SKIMMED))
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            assert result.verified, result.verifier.divergence
            rows.append(
                {
                    "lifecycle_fraction": fraction,
                    **shape,
                    "file_mb": round(log.stat().st_size / 1e6, 1),
                    "replay_s": round(seconds, 2),
                    "replay_cpu_s": round(cpu_seconds, 2),
                    "events_per_s": round(shape["events"] / seconds),
                    "verified_transitions": sum(
                        r.verified_transitions for r in result.verifier.runs
                    ),
                }
            )
            log.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per log")
    parser.add_argument(
        "--lifecycle",
        default="1.0,0.1,0.01",
        help="comma-separated fractions of lifecycle events (the rest are BatchRun)",
    )
    options = parser.parse_args()
    fractions = [float(x) for x in options.lifecycle.split(",")]
    rows = run(options.events, fractions)
    header = (
        f"{'lifecycle':>9}  {'events':>9}  {'transitions':>11}  {'batch_runs':>10}  "
        f"{'MB':>6}  {'replay s':>8}  {'cpu s':>7}  {'events/s':>9}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['lifecycle_fraction']:>9.0%}  {r['events']:>9}  {r['transition']:>11}  "
            f"{r['batch_run']:>10}  {r['file_mb']:>6}  {r['replay_s']:>8}  {r['replay_cpu_s']:>7}  "
            f"{r['events_per_s']:>9}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {RESULTS / 'replay_bench.json'}")


if __name__ == "__main__":
    main()
