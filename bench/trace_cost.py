"""`python -m bench.trace_cost`: what OpenTelemetry traces cost a request, in server CPU.

h2load's req/s on a shared machine swings between rounds by more than this cost (see
bench/h2load.py's `*_traced` targets), so this measures CPU time per request of the real
request path, in-process: gRPC's PredictionService.Predict behind the envelope's method
handler, the request core and the example's SavedModel, called on the loop's thread (as
the direct runner does for a model this cheap; a hop to a request thread would add its
wake-ups' noise to the figure); everything but the transport (a stand-in context gives
the call's metadata). The same path runs with
traces off, on at 1% (parentbased_traceidratio 0.01) and on for every request, exporting
over OTLP/HTTP to a local sink that accepts and drops; rounds interleave, medians are
reported. The CPU counted is the event loop's thread during the requests
(`time.thread_time`: where every per-request tracing step runs; TensorFlow's own op
threads, whose spinning is the same work in every variant but the noisiest figure in the
process, are left out) plus the whole process's while the round's spans are exported
(flushed) after it, so no variant pays for another's. The transport's CPU is left out too,
so the ratios overstate what a served request pays. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.targets import ROOT
from tests.util.otlp import OtlpReceiver

RESULTS = ROOT / "bench" / "results"
VARIANTS = {  # name: OTEL_TRACES_SAMPLER, _ARG (None: traces off)
    "off": None,
    "sampled_1pct": ("parentbased_traceidratio", "0.01"),
    "sampled_all": ("parentbased_always_on", ""),
}


class CallContext:
    """What the handler asks of grpc's ServicerContext: the metadata a client sends."""

    METADATA = (("user-agent", "grpc-c/1.85 (linux)"), ("te", "trailers"))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.METADATA

    def time_remaining(self) -> None:
        return None

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")

    def set_trailing_metadata(self, metadata: Any) -> None:
        """The answer's version and fingerprint (api/envelope/answer_provenance.py): not
        timed here."""


def tracing_for(sampler: tuple[str, str], endpoint: str) -> Any:
    """The server's tracer as the OTEL_* variables make it (the SDK reads them itself, when
    the tracer is made); the variables are put back afterwards."""
    from pyserving.adapters.tracing import tracing_from_environment

    variables = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": sampler[0],
        "OTEL_TRACES_SAMPLER_ARG": sampler[1],
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        return tracing_from_environment(os.environ)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def handlers(model_dir: Path, endpoint: str) -> tuple[dict[str, Any], list[Any]]:
    """One Predict handler per variant, over one loaded version and one runner."""
    from pyserving.adapters.loaders.tensorflow_loader import TensorFlowLoader
    from pyserving.api.envelope.request_envelope import Envelope, grpc_behavior
    from pyserving.api.tfserving.prediction_service import PredictionService
    from pyserving.engine.data_plane import InProcessDataPlane
    from pyserving.engine.request_core import InlineRunner, PlanOptions, RequestCore
    from pyserving.engine.servable_map import ServableHandle, ServableMap

    servable_map = ServableMap()
    servable_map.add(ServableHandle("mnist", 1, TensorFlowLoader().load(str(model_dir))))
    runner = InlineRunner()
    made, tracings = {}, []
    for name, sampler in VARIANTS.items():
        tracing = None if sampler is None else tracing_for(sampler, endpoint)
        core_runner = runner if tracing is None else tracing.runner(runner, batched=False)
        envelope = Envelope(tracer=None if tracing is None else tracing.requests)
        plane = InProcessDataPlane(RequestCore(servable_map, core_runner), PlanOptions())
        service = PredictionService(plane, PlanOptions())
        made[name] = grpc_behavior(envelope, "Predict", service.Predict)
        if tracing is not None:
            tracings.append(tracing)
    return made, tracings


async def measure(
    made: dict[str, Any], tracings: list[Any], request: Any, calls: int, rounds: int
) -> dict:
    context = CallContext()
    for handler in made.values():  # warm up, and check the answer
        for _ in range(64):
            reply = await handler(request, context)
        scores = np.array(reply.outputs["scores"].float_val)
        if scores.shape != (10,) or abs(scores.sum() - 1.0) > 1e-3:
            raise SystemExit(f"wrong answer: {reply}")
    cpu_us: dict[str, list[float]] = {name: [] for name in made}
    names = list(made)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            handler = made[name]
            gc.collect()
            started = time.thread_time()
            for _ in range(calls):
                await handler(request, context)
            loop_s = time.thread_time() - started
            started = time.process_time()
            for tracing in tracings:  # a round's spans are exported before the next starts
                tracing.flush()
            export_s = time.process_time() - started
            cpu_us[name].append((loop_s + export_s) / calls * 1e6)
    return cpu_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_cost", description=__doc__)
    parser.add_argument("--calls", type=int, default=3000, help="requests per variant and round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from bench.__main__ import ensure_model, test_images
    from bench.h2load import one_image_request
    from pyserving.adapters.logging_setup import configure_logging

    configure_logging("json", "warning")
    args.out.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.out) / "1"
    request = one_image_request(test_images()[0])
    with OtlpReceiver(decode=False) as sink:
        made, tracings = handlers(model, sink.endpoint)
        cpu_us = asyncio.run(measure(made, tracings, request, args.calls, args.rounds))
        for tracing in tracings:
            tracing.shutdown()
    if sink.posts == 0:
        raise SystemExit("no spans arrived at the sink: traces were not on")
    off = statistics.median(cpu_us["off"])
    rows = []
    print(f"\n{'variant':<14}{'cpu us/request':>16}{'x off':>8}{'+ us':>8}")
    for name, values in cpu_us.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "cpu_us_per_request": round(median, 2),
                "ratio_to_off": round(median / off, 4),
                "rounds_cpu_us": [round(v, 2) for v in values],
            }
        )
        print(f"{name:<14}{median:>16.1f}{median / off:>8.3f}{median - off:>8.1f}")
    report = {
        "bench": "trace_cost",
        "calls": args.calls,
        "rounds": args.rounds,
        "sink_posts": sink.posts,
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out / f"trace-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
