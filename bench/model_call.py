"""The model call alone, in-process: the old path (a TF2 concrete function from
`tf.saved_model.load`) beside the Session path TF Serving uses and pyserving now serves
through (a Session callable fed and fetched by tensor name), at batch 1 and 64; and the
Session path again with the caches cold (`session_cold`: each call follows a read of
`--evict_mb` of other memory), because inside a serving process grpc, the codecs and the
other requests run between two model calls and take TensorFlow's code and data out of the
caches: the warm figure is what a call costs alone, the cold one nearer what it costs there.

Both run the same SavedModel in one process, interleaved round by round so drift hits
both alike; their answers are checked equal before anything is timed.
`python -m bench.model_call --model=DIR` prints a table and JSON; `python -m bench` runs
it first and puts its rows in its report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

Call = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
PATHS = ("concrete_function", "session", "session_cold")
EVICT_MB = 8  # several times a core's L2 (1-2 MiB on the CPUs this runs on)


@dataclass(frozen=True)
class CallRow:
    path: str
    batch: int
    calls: int
    p50_us: float
    p99_us: float


def concrete_function(model_dir: str, signature: str) -> Call:
    """What the TensorFlow loader did before: the signature's function, numpy in and out."""
    import tensorflow as tf

    function = tf.saved_model.load(model_dir).signatures[signature]

    def call(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in function(**inputs).items()}

    return call


def session(model_dir: str, signature: str) -> Call:
    from pyserving.adapters.loaders.tensorflow_loader import TensorFlowLoader

    servable = TensorFlowLoader().load(model_dir)
    return lambda inputs: servable.run(signature, inputs, ())


def evictor(megabytes: int) -> Callable[[], object]:
    """Reads `megabytes` of memory that is not the model's."""
    buffer = np.ones(megabytes << 20, dtype=np.uint8)
    return buffer.sum


def measure(
    model_dir: str,
    signature: str,
    batches: tuple[int, ...],
    calls: int,
    rounds: int,
    evict_mb: int = EVICT_MB,
) -> list[CallRow]:
    callers = {
        "concrete_function": concrete_function(model_dir, signature),
        "session": session(model_dir, signature),
    }
    evict = evictor(evict_mb)
    rng = np.random.default_rng(0)
    inputs = {b: {"images": rng.random((b, 64), dtype=np.float32)} for b in batches}
    for b in batches:  # same answers first, then time
        want, got = (call(inputs[b]) for call in callers.values())
        assert set(want) == set(got), (want.keys(), got.keys())
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    callers["session_cold"] = callers["session"]  # the same Session, called after `evict`
    times: dict[tuple[str, int], list[float]] = {(p, b): [] for p in PATHS for b in batches}
    for _ in range(rounds):
        for b in batches:
            for name in PATHS:
                call, feed, bucket = callers[name], inputs[b], times[(name, b)]
                cold = name == "session_cold"
                for _ in range(calls // rounds):
                    if cold:
                        evict()
                    started = time.perf_counter()
                    call(feed)
                    bucket.append(time.perf_counter() - started)
    return [
        CallRow(
            path=p,
            batch=b,
            calls=len(t),
            p50_us=round(float(np.percentile(t, 50)) * 1e6, 1),
            p99_us=round(float(np.percentile(t, 99)) * 1e6, 1),
        )
        for (p, b), t in times.items()
    ]


def p50_ratio(rows: list[CallRow], path: str, over: str) -> dict[str, float]:
    """`path`'s p50 / `over`'s p50, per batch size."""
    p50 = {(r.path, r.batch): r.p50_us for r in rows}
    return {
        str(b): round(p50[(path, b)] / p50[(over, b)], 2) for b in sorted({r.batch for r in rows})
    }


def speedups(rows: list[CallRow]) -> dict[str, float]:
    """Concrete function p50 / Session p50, per batch size."""
    return p50_ratio(rows, "concrete_function", "session")


def cold_cost(rows: list[CallRow]) -> dict[str, float]:
    """Session p50 with the caches cold / warm, per batch size."""
    return p50_ratio(rows, "session_cold", "session")


def table(rows: list[CallRow]) -> str:
    lines = [f"{'model call':<20}{'batch':>6}{'calls':>8}{'p50 us':>10}{'p99 us':>10}"]
    lines += [
        f"{r.path:<20}{r.batch:>6}{r.calls:>8}{r.p50_us:>10.1f}{r.p99_us:>10.1f}" for r in rows
    ]
    lines += [f"session speed-up at batch {b}: {x:.1f}x" for b, x in speedups(rows).items()]
    lines += [f"session cold / warm at batch {b}: {x:.1f}x" for b, x in cold_cost(rows).items()]
    return "\n".join(lines)


def run_subprocess(model_dir: str, quick: bool, env: Mapping[str, str]) -> dict:
    """Run this module in a fresh process (TensorFlow as the server runs it); its JSON."""
    calls = "600" if quick else "3000"
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.model_call",
            f"--model={model_dir}",
            f"--calls={calls}",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=600,
    ).stdout
    return json.loads(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_call", description=__doc__)
    parser.add_argument("--model", required=True, help="a SavedModel version folder")
    parser.add_argument("--signature", default="predict_images")
    parser.add_argument("--batches", default="1,64", help="comma-separated (default: 1,64)")
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per path and batch")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument(
        "--evict_mb",
        type=int,
        default=EVICT_MB,
        help=f"memory read before each session_cold call (default: {EVICT_MB})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    rows = measure(args.model, args.signature, batches, args.calls, args.rounds, args.evict_mb)
    report = {
        "rows": [asdict(r) for r in rows],
        "session_speedup": speedups(rows),
        "session_cold_over_warm": cold_cost(rows),
    }
    print(json.dumps(report) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
