"""First-request latency with and without model warm-up, on real servers side by side.

    python -m bench.warmup_bench [--runs=5] [--warmup_requests=10] [--from_logs]

Exports the tutorial's MNIST model once with `--warmup_requests=N` (TF Serving's
`assets.extra/tf_serving_warmup_requests`), then starts fresh `pyserving serve`
processes alternately with `--enable_model_warmup=true` and `=false`. With
`--from_logs`, a third mode warms up from traffic instead: a server with a
`logging_config` logs N Predicts, `warmup-from-logs` makes the warm-up file of a copy of
the version from its files. For each server it
waits until health says SERVING (the channel is connected by then, so no connection
setup is timed), times the very first Predict, then the median of the next 30 as the
steady state. Prints a table and writes JSON to bench/results/warmup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from tests.util import processes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
STEADY_REQUESTS = 30


def export_model(folder: Path, warmup_requests: int) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "mnist_saved_model.py"),
            "--training_iteration=100",
            f"--warmup_requests={warmup_requests}",
            str(folder),
        ],
        check=True,
        capture_output=True,
        env=ENV,
        timeout=600,
    )
    return folder


def predict_request(images: np.ndarray) -> object:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


def warmup_from_traffic(models: Path, folder: Path, images: np.ndarray) -> Path:
    """A copy of `models` whose version warms up on logged traffic: a server logs one
    Predict per image (sampling_rate 1.0), `warmup-from-logs` makes the warm-up file."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from pyserving.adapters.request_log.files import prefix_files
    from pyserving.api.commands.warmup_from_logs import make_warmup_file

    prefix = folder / "logs" / "mnist"
    config = folder / "logging.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "mnist" base_path: "{models}" '
        f'logging_config {{ log_collector_config {{ filename_prefix: "{prefix}" }} '
        "sampling_config { sampling_rate: 1.0 } } } }"
    )
    port = processes.free_port()
    server = processes.spawn(
        processes.serve_command(
            port, f"--model_config_file={config}", "--file_system_poll_wait_seconds=0"
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            processes.wait_serving(f"127.0.0.1:{port}", server, 120, channel=channel)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for image in images:
                stub.Predict(predict_request(image[None]), timeout=60)
    finally:
        processes.stop(server)  # the writer finishes the queue before the process exits
    target = folder / "mnist_from_logs"
    shutil.copytree(models, target)
    out = target / "1" / "assets.extra" / "tf_serving_warmup_requests"
    written, _, _ = make_warmup_file(
        prefix_files(str(prefix)), out, len(images), "mnist", "predict_images"
    )
    assert written == len(images), f"{written} of {len(images)} requests were logged"
    return target


def one_run(models: Path, warmup: bool, image: np.ndarray) -> dict[str, float]:
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    port = processes.free_port()
    started = time.perf_counter()
    server = processes.spawn(
        processes.serve_command(
            port,
            "--model_name=mnist",
            f"--model_base_path={models}",
            f"--enable_model_warmup={str(warmup).lower()}",
            "--file_system_poll_wait_seconds=0",
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            address = f"127.0.0.1:{port}"
            processes.wait_serving(address, server, 120, poll_s=0.02, channel=channel)
            ready_s = time.perf_counter() - started
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_request(image)
            latencies = []
            for _ in range(1 + STEADY_REQUESTS):
                t0 = time.perf_counter()
                stub.Predict(request, timeout=60)
                latencies.append(time.perf_counter() - t0)
    finally:
        processes.stop(server)
    return {
        "ready_s": ready_s,
        "first_ms": latencies[0] * 1e3,
        "steady_ms": statistics.median(latencies[1:]) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="servers per mode (default: 5)")
    parser.add_argument(
        "--warmup_requests", type=int, default=10, help="records in the warm-up file"
    )
    parser.add_argument(
        "--from_logs",
        action="store_true",
        help="also time a version warmed by a warm-up file made from request logs",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "examples"))
    from mnist_input_data import load_dataset

    images = load_dataset(None).test_images.astype(np.float32)
    image = images[:1]
    runs: dict[str, list[dict[str, float]]] = {"warmup": [], "no_warmup": []}
    if args.from_logs:
        runs["from_logs"] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = export_model(Path(tmp) / "mnist", args.warmup_requests)
        if args.from_logs:  # traffic other than the timed request: images 1..N
            logged = warmup_from_traffic(models, Path(tmp), images[1 : 1 + args.warmup_requests])
        for _ in range(args.runs):  # alternate, so drift on a shared machine hits all alike
            runs["warmup"].append(one_run(models, True, image))
            runs["no_warmup"].append(one_run(models, False, image))
            if args.from_logs:
                runs["from_logs"].append(one_run(logged, True, image))

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    summary = {
        mode: {key: median(mode, key) for key in ("first_ms", "steady_ms", "ready_s")}
        for mode in runs
    }
    ratio = summary["no_warmup"]["first_ms"] / summary["warmup"]["first_ms"]
    ratios = {mode: summary["no_warmup"]["first_ms"] / summary[mode]["first_ms"] for mode in runs}
    print(f"first Predict after SERVING, median of {args.runs} fresh servers per mode")
    print(f"{'mode':<11} {'first ms':>9} {'steady ms':>10} {'first/steady':>13} {'ready s':>8}")
    for mode, s in summary.items():
        print(
            f"{mode:<11} {s['first_ms']:>9.2f} {s['steady_ms']:>10.2f} "
            f"{s['first_ms'] / s['steady_ms']:>13.1f} {s['ready_s']:>8.2f}"
        )
    print(f"first request without warm-up / with warm-up: {ratio:.1f}x")
    if args.from_logs:
        print(f"first request without warm-up / warmed from logs: {ratios['from_logs']:.1f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "warmup.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "warmup_first_request",
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "runs": args.runs,
                "warmup_requests": args.warmup_requests,
                "summary": summary,
                "first_request_ratio_without_over_with": ratio,
                "first_request_ratio_without_over_mode": ratios,
                "raw": runs,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
