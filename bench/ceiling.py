"""The ceiling: the same SavedModel called in-process, at the batch sizes the server formed.

No gRPC, no queue: one thread calling the model back to back with a batch of `b` rows,
through the same `TensorFlowServable.run` the server uses. Requests/s = b * calls/s.
`python -m bench.ceiling --model=DIR --batch_sizes=1,8,32 --seconds=1` prints JSON; without
--batch_sizes it loads the model first and then reads the sizes from stdin, so the bench
can start it (TensorFlow's import and the load take seconds) while the servers start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def load(model_dir: str, intra: int = 0, inter: int = 0) -> Any:
    from pyserving.adapters.loaders.tensorflow_loader import SessionOptions, TensorFlowLoader

    return TensorFlowLoader(session=SessionOptions(intra, inter)).load(model_dir)


def measure(servable: Any, batch_sizes: list[int], seconds: float) -> dict[str, dict[str, float]]:
    pixels = servable.signatures["predict_images"].inputs["images"].shape[1]
    results = {}
    for b in batch_sizes:
        images = np.random.default_rng(0).random((b, pixels), dtype=np.float32)
        inputs = {"images": images}
        for _ in range(20):  # warm-up
            servable.run("predict_images", inputs, ())
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            servable.run("predict_images", inputs, ())
            times.append(time.perf_counter() - t)
        calls = np.array(times)
        results[str(b)] = {
            "batch_size": b,
            "throughput": b * len(calls) / calls.sum(),
            "p50_ms": float(np.percentile(calls, 50) * 1e3),
            "p99_ms": float(np.percentile(calls, 99) * 1e3),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a SavedModel version folder")
    parser.add_argument("--batch_sizes", help="comma-separated (default: one line on stdin)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--intra_op", type=int, default=0, help="the servers' intra-op threads")
    parser.add_argument("--inter_op", type=int, default=0, help="the servers' inter-op threads")
    args = parser.parse_args()
    servable = load(args.model, args.intra_op, args.inter_op)
    text = args.batch_sizes or sys.stdin.readline()
    sizes = sorted({max(1, int(s)) for s in text.strip().split(",") if s})
    json.dump(measure(servable, sizes, args.seconds), sys.stdout)


if __name__ == "__main__":
    main()
