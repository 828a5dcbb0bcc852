"""`python -m bench`: what batching buys, measured side by side in one run.

Targets, all answering the same one-image Predict requests from the same load generator
(bench/loadgen.py): pyserving without batching; pyserving with `--enable_batching` and
default parameters; pyserving with bench/tuned_batching.config; the floor (a minimal
grpc.aio server with a canned reply: what gRPC in Python costs); the ceiling (the same
SavedModel called in-process at the batch sizes the batching server formed). Each
concurrency level runs every target in turn, so drift on a shared machine hits all alike.
Prints a table and writes bench/results/bench-<time>.json (and latest.json).

`python -m bench --h2load [...]` measures with h2load instead (bench/h2load.py): the
floor, unbatched and batched servers pinned to CPU 0, the C load generator on CPU 1.

`python -m bench --cores [...]` is `python -m bench.cores` (bench/cores.py): the cores
table, `--workers` front-end processes over one engine against workers=0, on all CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import model_call
from bench.loadgen import LoadSpec, predict_requests, run_load
from bench.report import Row, build_report, print_table
from bench.targets import QUIET_ENV, ROOT, Target, floor_target, pyserving_target

RESULTS = ROOT / "bench" / "results"
TUNED = ROOT / "bench" / "tuned_batching.config"
RATIO_TARGET = "batched_tuned"
TUNED_IDLE_MICROS = 2000  # pyserving's --batching_idle_micros, beside the TF Serving file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    parser.add_argument(
        "--concurrency", default="1,10,64", help="comma-separated levels (default: %(default)s)"
    )
    parser.add_argument(
        "--duration", type=float, help="measured seconds per target and level (8; quick: 1.5)"
    )
    parser.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each measurement (2; quick: 0.3)"
    )
    parser.add_argument(
        "--max_requests", type=int, default=200_000, help="stop a measurement after this many"
    )
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second")
    parser.add_argument(
        "--targets",
        help="which servers to measure (default: floor,unbatched,batched,batched_tuned; "
        "--quick leaves out batched, the default parameters)",
    )
    parser.add_argument(
        "--batching_file",
        action="append",
        default=[],
        metavar="NAME=FILE[,FLAG...]",
        help="also measure pyserving --enable_batching with this parameters file (and serve "
        "flags), as target NAME",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.5 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 2.0)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    args.targets = args.targets or (
        "floor,unbatched,batched_tuned" if args.quick else "floor,unbatched,batched,batched_tuned"
    )
    return args


def test_images() -> np.ndarray:
    """The example's held-out images (scikit-learn's digits): what its client sends."""
    sys.path.insert(0, str(ROOT / "examples"))
    from mnist_input_data import load_dataset

    return load_dataset(None).test_images


def ensure_model(out: Path) -> Path:
    """The example's trained SavedModel (version 1), trained once and kept in results/."""
    base = out / "model"
    if not (base / "1" / "saved_model.pb").exists():
        print("training the example model (once) ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "mnist_saved_model.py"),
                "--training_iteration=1000",
                "--model_version=1",
                str(base),
            ],
            check=True,
            env=QUIET_ENV,
            capture_output=True,
        )
    return base


def make_targets(
    names: list[str], model: Path, workdir: Path, extra_files: list[str]
) -> list[Target]:
    factories = {
        "floor": lambda: floor_target(workdir),
        "unbatched": lambda: pyserving_target(
            "unbatched", "pyserving, one model call per request", model, workdir
        ),
        "batched": lambda: pyserving_target(
            "batched", "pyserving --enable_batching (defaults)", model, workdir, "--enable_batching"
        ),
        "batched_tuned": lambda: pyserving_target(
            "batched_tuned",
            f"pyserving --enable_batching, tuned_batching.config, idle {TUNED_IDLE_MICROS} us",
            model,
            workdir,
            "--enable_batching",
            f"--batching_parameters_file={TUNED}",
            f"--batching_idle_micros={TUNED_IDLE_MICROS}",
        ),
    }
    for extra in extra_files:
        name, _, spec = extra.partition("=")
        path, *flags = spec.split(",")
        factories[name] = lambda name=name, path=path, flags=flags: pyserving_target(
            name,
            f"pyserving --enable_batching, {Path(path).name} {' '.join(flags)}".strip(),
            model,
            workdir,
            "--enable_batching",
            f"--batching_parameters_file={Path(path).resolve()}",
            *flags,
        )
        names = [*names, name]
    unknown = set(names) - set(factories)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; choose from {sorted(factories)}")
    return [factories[n]() for n in names]


def start_ceiling(model: Path, seconds: float) -> subprocess.Popen[str]:
    """Load the model in-process now; it is told the batch sizes to time when they are known."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.ceiling", f"--model={model / '1'}", f"--seconds={seconds}"],
        env=QUIET_ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


def ceiling(process: subprocess.Popen[str], sizes: list[int]) -> dict[int, dict[str, float]]:
    output, _ = process.communicate(",".join(map(str, sizes)) + "\n", timeout=600)
    if process.returncode:
        raise RuntimeError(f"bench.ceiling failed with exit code {process.returncode}")
    return {int(k): v for k, v in json.loads(output).items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--h2load"]:  # the server measured with a C load generator
        from bench.h2load import main as h2load_main

        return h2load_main(argv[1:])
    if argv[:1] == ["--cores"]:  # front-end processes over one engine: the cores table
        from bench.cores import main as cores_main

        return cores_main(argv[1:])
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model = ensure_model(args.out)
    print("timing the model call in-process (old path beside the Session path) ...", flush=True)
    calls = model_call.run_subprocess(str(model / "1"), args.quick, QUIET_ENV)
    workdir = args.out / "run"
    workdir.mkdir(exist_ok=True)
    targets = make_targets(args.targets.split(","), model, workdir, args.batching_file)
    requests = predict_requests(test_images()[:256])
    rows: list[Row] = []
    ceiling_process = start_ceiling(model, 0.5 if args.quick else 2.0)
    try:
        for target in targets:
            target.start()
        for target in targets:
            target.wait_ready()
        print(f"targets ready after {time.time() - started:.0f}s; measuring", flush=True)
        for level in args.levels:
            spec = LoadSpec(
                concurrency=level,
                duration_s=args.duration,
                warmup_s=args.warmup,
                max_requests=args.max_requests,
                mode=args.mode,
                rate=args.rate,
            )
            for target in targets:
                cpu_before = target.cpu_seconds()
                result = asyncio.run(run_load(target.address, requests, spec))
                cpu_s = target.cpu_seconds() - cpu_before
                mean_batch = target.mean_batch(result.window_wall)
                if mean_batch is None and target.name == "unbatched":
                    mean_batch = 1.0
                rows.append(Row.from_result(target.name, result, mean_batch, cpu_s))
                print(rows[-1].line(), flush=True)
    except BaseException:
        ceiling_process.kill()
        raise
    finally:
        for target in targets:
            target.stop()
    formed = sorted(
        {max(1, round(r.mean_batch)) for r in rows if r.mean_batch and r.target == RATIO_TARGET}
    )
    if not formed:
        ceiling_process.kill()
    else:
        measured = ceiling(ceiling_process, formed)
        for r in [r for r in rows if r.target == RATIO_TARGET]:
            b = max(1, round(r.mean_batch or 1))
            rows.append(Row.ceiling(r.concurrency, measured[b]))
    report = build_report(rows, targets, args, RATIO_TARGET)
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    report["elapsed_s"] = round(time.time() - started, 1)
    report["model_call"] = calls
    print_table(report)
    print("\n" + model_call.table([model_call.CallRow(**r) for r in calls["rows"]]))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / f'bench-{stamp}.json'} in {report['elapsed_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
