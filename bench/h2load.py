"""`python -m bench.h2load`: the server measured with a C load generator, not a Python one.

The Python load generator (bench/loadgen.py) saturates near 2.5k req/s and hides how far
a server is from the floor. Here Debian's h2load (nghttp2-client) sends the same
gRPC-framed one-image PredictRequest to each target: the floor (grpc.aio with a canned
reply), pyserving unbatched and pyserving --enable_batching, and both again with
OpenTelemetry traces on at 1% sampling (parentbased_traceidratio 0.01, exported over
OTLP/HTTP to a local sink that accepts and drops: the cost is the server's); the same image
as an Open Inference Protocol ModelInferRequest (raw FP32 contents, as tritonclient sends
it) to the same two untraced servers, the same model and signature (ModelInfer / Predict at
c=64 is printed and written); and over REST (`h2load
--h1`, TF Serving's JSON `:predict`) the same two servers and an aiohttp floor that
parses the JSON body and answers a canned prediction. Every target is pinned to
CPU 0 (`taskset -c 0`) and h2load to CPU 1; each concurrency level runs every target in
turn (rows interleaved, so drift hits all alike); each target's answer is checked before
it is measured. p50 comes from h2load's per-request log. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench.heavy_model import ONE_IMAGE_MS
from bench.heavy_model import WIDTH as HEAVY_WIDTH
from bench.heavy_model import export as export_heavy
from bench.targets import ROOT, Target, floor_target, free_port, pyserving_target
from pyserving.adapters.protos import grpc_service_pb2, grpc_service_pb2_grpc
from tests.util.otlp import OtlpReceiver
from tests.util.waiting import eventually

PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
REST_PATH = "/v1/models/mnist:predict"
RESULTS = ROOT / "bench" / "results"
SERVER_CPU, CLIENT_CPU = "0", "1"
HEAVY_TIMEOUT_US = 5000
TRACE_SAMPLING = "0.01"
TRACED = {"unbatched_traced": "unbatched", "batched_traced": "batched"}  # traced: untraced


def batching_config(timeout_us: int) -> str:
    """The batching file of every batched target: max 64, one batch thread."""
    return (
        f"max_batch_size {{ value: 64 }}\nbatch_timeout_micros {{ value: {timeout_us} }}\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 1000 }\n"
    )


BATCHING = batching_config(1000)
# REST requests processed at once. The default (4 per CPU, TF Serving's: each of its HTTP
# threads holds one request through its Session::Run) is 8 here, so 32 clients would
# queue for a slot and a batch could never hold more than 8 requests: every batch would
# wait out its timeout. An operator batching REST traffic sets it to at least
# max_batch_size; so do the REST targets (h2load --h1 c=32, one run, 2026-12-02: batched
# 3,359 req/s with 8, 4,889 with 64; unbatched 2,706 and 3,375).
REST_SLOTS = "--rest_api_num_threads=64"


def tracing_env(endpoint: str) -> dict[str, str]:
    """The OTEL_* variables of a traced target: 1% of requests, to `endpoint`."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "pyserving-bench",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": TRACE_SAMPLING,
    }


# The server has one CPU (taskset): TensorFlow's default pools (one thread per core of the
# machine) only add thread switches there, so every pyserving target runs each op in the
# calling thread, with TF Serving's own flags (server.cc: inter-op -1 is passed on when
# intra-op is > 0). The in-process ceiling uses the same Session options.
ONE_CPU_SESSION = (1, -1)  # (intra-op, inter-op)


def session_flags(intra: int, inter: int) -> list[str]:
    if (intra, inter) == (0, 0):
        return []
    return [
        f"--tensorflow_intra_op_parallelism={intra}",
        f"--tensorflow_inter_op_parallelism={inter}",
    ]


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message: what h2load sends as the body."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def one_image_request(image: np.ndarray) -> predict_pb2.PredictRequest:
    from pyserving.api.envelope import tensor_codec

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "predict_images"
    tensor_codec.encode(image.reshape(1, -1).astype(np.float32), request.inputs["images"])
    return request


def check_answer(target: Target, request: predict_pb2.PredictRequest) -> None:
    """The target answers a real client with ten scores summing to ~1 (softmax)."""
    with grpc.insecure_channel(target.address) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30
        )
    scores = np.array(reply.outputs["scores"].float_val)
    if scores.shape != (10,) or abs(scores.sum() - 1.0) > 1e-3:
        raise SystemExit(f"{target.name} answered wrongly: {reply}")


def one_image_infer_request(image: np.ndarray) -> grpc_service_pb2.ModelInferRequest:
    """The Open Inference Protocol's request for the same image, model and signature."""
    request = grpc_service_pb2.ModelInferRequest(model_name="mnist")
    request.parameters["signature_name"].string_param = "predict_images"
    row = image.reshape(1, -1).astype(np.float32)
    request.inputs.add(name="images", datatype="FP32", shape=row.shape)
    request.raw_input_contents.append(row.tobytes())
    return request


def check_infer_answer(
    target: Target, request: grpc_service_pb2.ModelInferRequest, predict: predict_pb2.PredictRequest
) -> None:
    """ModelInfer answers the scores Predict answers for the same image, on the same server."""
    with grpc.insecure_channel(target.address) as channel:
        reply = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, timeout=30
        )
        expected = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict, timeout=30
        )
    scores = np.frombuffer(reply.raw_output_contents[0], np.float32)
    if not np.array_equal(scores, np.array(expected.outputs["scores"].float_val, np.float32)):
        raise SystemExit(f"{target.name} answered ModelInfer unlike Predict: {reply}")


def check_rest_answer(address: str, body: bytes, name: str) -> None:
    """The REST target answers `:predict` with one row of ten scores summing to ~1."""

    def predictions() -> list[Any]:
        request = urllib.request.Request(
            f"http://{address}{REST_PATH}", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return list(json.loads(reply.read())["predictions"])

    rows = eventually(predictions, 120, 0.2, f"{name}'s REST answer", (OSError,))
    scores = np.array(rows[0])
    if scores.shape != (10,) or abs(scores.sum() - 1.0) > 1e-3:
        raise SystemExit(f"{name} answered wrongly over REST: {rows}")


def h2load(
    address: str,
    body: Path,
    concurrency: int,
    seconds: float,
    log: Path,
    rest: bool = False,
    grpc_path: str = PREDICT_PATH,
    cpu: str | None = CLIENT_CPU,
) -> dict:
    """One h2load run (gRPC over HTTP/2 to `grpc_path`, or REST over HTTP/1.1 with `rest`),
    pinned to `cpu` (None: not pinned); req/s from its summary, p50/p99 from its
    per-request log."""
    protocol = (
        ["--h1", "-H", "content-type: application/json"]
        if rest
        else ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    )
    path = REST_PATH if rest else grpc_path
    log.unlink(missing_ok=True)  # h2load appends to its log file
    pinned = ["taskset", "-c", cpu] if cpu is not None else []
    command = [
        *pinned, "h2load",
        f"--duration={max(1, round(seconds))}", "--warm-up-time=1", f"--clients={concurrency}",
        "--max-concurrent-streams=1", f"--data={body}", f"--log-file={log}",
        *protocol, f"http://{address}{path}",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = next(line for line in output.splitlines() if line.startswith("finished in"))
    rps = float(summary.split(",")[1].split()[0])
    status = next(line for line in output.splitlines() if line.startswith("status codes:"))
    durations = [int(line.split()[2]) for line in log.read_text().splitlines() if line.strip()]
    ok = int(status.split()[2]) if "2xx" in status else 0
    return {
        "req_s": rps,
        "p50_ms": statistics.median(durations) / 1000 if durations else None,
        "p99_ms": float(np.percentile(durations, 99)) / 1000 if durations else None,
        "requests": len(durations),
        "http_2xx": ok,
    }


def cpu_per_request(cpu_s: float, result: dict, seconds: float) -> float:
    """The server's CPU µs per request over a run (its warm-up second too, at the measured
    rate): on a shared machine a steadier cost figure than req/s."""
    answered = result["req_s"] * (max(1, round(seconds)) + 1)
    return round(cpu_s / answered * 1e6, 1) if answered else 0.0


def median_run(results: list[dict], medians: tuple[str, ...] = ("cpu_us_per_request",)) -> dict:
    """The run with the median req/s of a target's rounds, every round's req/s, and the
    median of each key in `medians` over the rounds (the lower one of an even count)."""
    ordered = sorted(results, key=lambda r: r["req_s"])
    middle = (len(results) - 1) // 2
    return {
        **ordered[middle],
        **{key: sorted(r[key] for r in results)[middle] for key in medians},
        "rounds_req_s": [r["req_s"] for r in results],
    }


def measure_heavy(args: argparse.Namespace, workdir: Path, body: Path, request: Any) -> list:
    """What batching is for: the heavy model, unbatched vs batched at c=64, and the same
    model called in-process at the batch sizes the batching server formed (the ceiling)."""
    model = export_heavy(args.out, args.heavy_width)
    session = session_flags(*args.session)
    batching = workdir / "heavy_batching.config"
    batching.write_text(batching_config(HEAVY_TIMEOUT_US))
    targets = [
        pyserving_target("heavy_unbatched", "pyserving, heavy MLP", model, workdir, *session),
        pyserving_target(
            "heavy_batched",
            f"pyserving --enable_batching (max 64, {HEAVY_TIMEOUT_US} us), heavy MLP",
            model,
            workdir,
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            *session,
        ),
    ]
    rows = []
    try:
        for target in targets:
            target.command = ["taskset", "-c", SERVER_CPU, *target.command]
            target.start()
        for target in targets:
            target.wait_ready()
            check_answer(target, request)
        for target in targets:
            begin = time.time()
            result = h2load(target.address, body, 64, args.seconds, workdir / f"{target.name}.h2")
            mean = target.mean_batch((begin, time.time())) or 1.0
            rows.append({"target": target.name, "concurrency": 64, "mean_batch": mean, **result})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for target in targets:
            target.stop()
    formed = max(1, round(rows[-1]["mean_batch"]))
    ceiling = json.loads(
        subprocess.run(
            ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "bench.ceiling",
             f"--model={model / '1'}", f"--batch_sizes=1,{formed}", "--seconds=3",
             f"--intra_op={args.session[0]}", f"--inter_op={args.session[1]}"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout
    )  # fmt: skip
    single, batch = ceiling["1"], ceiling[str(formed)]
    rows.append({"target": "heavy_in_process_b1", "concurrency": 1,
                 "req_s": single["throughput"], "p50_ms": single["p50_ms"],
                 "p99_ms": single["p99_ms"]})  # fmt: skip
    rows.append({"target": f"heavy_in_process_b{formed}", "concurrency": formed,
                 "req_s": batch["throughput"], "p50_ms": batch["p50_ms"],
                 "p99_ms": batch["p99_ms"]})  # fmt: skip
    unbatched, batched = rows[0], rows[1]
    print(
        f"\nheavy MLP ({args.heavy_width} wide): one-image call {single['p50_ms']:.2f} ms "
        "in-process; batched / unbatched "
        f"= {batched['req_s'] / unbatched['req_s']:.2f} (target >= 3); batched / in-process at "
        f"batch {formed} = {batched['req_s'] / batch['throughput']:.2f} (target >= 0.8); "
        f"batched p99 {batched['p99_ms']:.1f} ms vs 2 x timeout + one batch "
        f"{2 * HEAVY_TIMEOUT_US / 1000 + batch['p50_ms']:.1f} ms"
    )
    low, high = ONE_IMAGE_MS
    if not low <= single["p50_ms"] <= high:
        print(
            f"note: the one-image call took {single['p50_ms']:.2f} ms, outside the {low:g}-{high:g}"
            f" ms this comparison is meant for: pass another --heavy_width (the call costs about"
            " its square)"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.h2load", description=__doc__)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--rest_concurrency", default="1,32")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="gRPC runs per target and concurrency, interleaved; the median is reported",
    )
    parser.add_argument(
        "--heavy", action="store_true", help="also the compute-heavy model (what batching is for)"
    )
    parser.add_argument(
        "--heavy_width",
        type=int,
        default=HEAVY_WIDTH,
        help="the heavy MLP's layer width; pick one whose one-image call takes 2-5 ms on this "
        "CPU (the summary prints it; the call costs about width squared)",
    )
    parser.add_argument(
        "--tf_default_threads",
        action="store_true",
        help="serve with TensorFlow's default thread pools, not ops in the calling thread "
        "(--tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=-1)",
    )
    args = parser.parse_args(argv)
    args.session = (0, 0) if args.tf_default_threads else ONE_CPU_SESSION
    session = session_flags(*args.session)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install -y nghttp2-client")
    from bench.__main__ import ensure_model, test_images

    args.out.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.out)
    workdir = Path(tempfile.mkdtemp(prefix="bench-h2load-"))
    request = one_image_request(test_images()[0])
    body = workdir / "predict.grpc"
    body.write_bytes(grpc_frame(request.SerializeToString()))
    infer_request = one_image_infer_request(test_images()[0])
    infer_body = workdir / "model_infer.grpc"
    infer_body.write_bytes(grpc_frame(infer_request.SerializeToString()))
    batching = workdir / "batching.config"
    batching.write_text(BATCHING)
    rest_ports = {
        "unbatched": free_port(),
        "batched": free_port(),
        "rest_floor": free_port(),
        "rest_floor_asyncio": free_port(),
    }
    sink = OtlpReceiver(decode=False).__enter__()
    traced = tracing_env(sink.endpoint)
    targets = [
        floor_target(workdir),
        floor_target(workdir, "asyncio"),  # what the loop alone buys (floors: pyserving's loop)
        pyserving_target(
            "unbatched",
            "pyserving",
            model,
            workdir,
            f"--rest_api_port={rest_ports['unbatched']}",
            REST_SLOTS,
            *session,
        ),
        pyserving_target(
            "unbatched_traced", "pyserving, traces at 1%", model, workdir, *session, env=traced
        ),
        pyserving_target(
            "batched",
            "pyserving --enable_batching (max 64, 1 ms)",
            model,
            workdir,
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            f"--rest_api_port={rest_ports['batched']}",
            REST_SLOTS,
            *session,
        ),
        pyserving_target(
            "batched_traced",
            "pyserving --enable_batching (max 64, 1 ms), traces at 1%",
            model,
            workdir,
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            *session,
            env=traced,
        ),
    ]
    rest_floors = [
        Target(
            name,
            f"aiohttp: parse the JSON body, canned answer, {loop} loop",
            [
                sys.executable,
                "-m",
                "bench.rest_floor",
                f"--port={rest_ports[name]}",
                f"--event_loop={loop}",
            ],
            rest_ports[name],
            workdir / f"{name}.log",
        )
        for name, loop in (("rest_floor", "uvloop"), ("rest_floor_asyncio", "asyncio"))
    ]
    rest_body = workdir / "predict.json"
    rest_body.write_bytes(json.dumps({"instances": [test_images()[0].tolist()]}).encode())
    rows = []
    try:
        for target in [*targets, *rest_floors]:
            target.command = ["taskset", "-c", SERVER_CPU, *target.command]
            target.start()
        for target in targets:
            target.wait_ready()
            check_answer(target, request)
        for target in targets:
            if not target.name.startswith("floor"):
                check_infer_answer(target, infer_request, request)
        for name, port in rest_ports.items():
            check_rest_answer(f"127.0.0.1:{port}", rest_body.read_bytes(), name)
        for level in [int(c) for c in args.concurrency.split(",")]:
            jobs = [(t.name, t, body, PREDICT_PATH) for t in targets]
            jobs += [  # ModelInfer beside Predict, on the same servers
                (f"infer_{t.name}", t, infer_body, MODEL_INFER_PATH)
                for t in targets
                if t.name in ("unbatched", "batched")
            ]
            runs: dict[str, list[dict]] = {name: [] for name, *_ in jobs}
            for _ in range(args.rounds):  # rounds interleaved: drift hits every target alike
                for name, target, request_body, path in jobs:
                    cpu, begin = target.cpu_seconds(), time.time()
                    result = h2load(
                        target.address,
                        request_body,
                        level,
                        args.seconds,
                        workdir / f"{name}.h2",
                        grpc_path=path,
                    )
                    result["cpu_us_per_request"] = cpu_per_request(
                        target.cpu_seconds() - cpu, result, args.seconds
                    )
                    batch = target.mean_batch((begin, time.time()))
                    if batch is not None:  # a batching target: how full its batches were
                        result["mean_batch"] = round(batch, 2)
                    if result["http_2xx"] == 0:
                        raise SystemExit(f"{name}: no successful request")
                    runs[name].append(result)
                    print(
                        json.dumps({"target": name, "concurrency": level, **result}),
                        flush=True,
                    )
            for name, results in runs.items():
                rows.append({"target": name, "concurrency": level, **median_run(results)})
        for level in [int(c) for c in args.rest_concurrency.split(",")]:
            for name, port in rest_ports.items():
                result = h2load(
                    f"127.0.0.1:{port}",
                    rest_body,
                    level,
                    args.seconds,
                    workdir / f"rest_{name}.h2",
                    True,
                )
                if result["http_2xx"] == 0:
                    raise SystemExit(f"REST {name}: no successful request")
                target_name = name if name.startswith("rest_floor") else f"rest_{name}"
                rows.append({"target": target_name, "concurrency": level, **result})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for target in [*targets, *rest_floors]:
            target.stop()
        sink.__exit__()
    if sink.posts == 0:
        raise SystemExit("the traced targets exported no spans: tracing was not on")
    if args.heavy:
        rows += measure_heavy(args, workdir, body, request)
    floors = {
        (r["target"], r["concurrency"]): r for r in rows if r["target"] in ("floor", "rest_floor")
    }
    for r in rows:
        if r["target"].startswith("heavy"):
            print(f"{r['target']:<22}{r['concurrency']:>4}{r['req_s']:>10.0f}{r['p50_ms']:>9.2f}"
                  f"{r['p99_ms']:>9.2f}")  # fmt: skip
    by_key = {(r["target"], r["concurrency"]): r for r in rows}
    for r in rows:
        untraced = by_key.get((TRACED.get(r["target"], ""), r["concurrency"]))
        if untraced is not None:
            r["ratio_to_untraced"] = round(r["req_s"] / untraced["req_s"], 3)
            cpu_ratio = r["cpu_us_per_request"] / untraced["cpu_us_per_request"]
            r["cpu_to_untraced"] = round(cpu_ratio, 3)
    print(f"\n{'target':<18}{'c':>4}{'req/s':>10}{'x floor':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'cpu us/req':>11}{'batch':>7}{'x untraced':>12}{'cpu x untr.':>12}")  # fmt: skip
    for r in rows:
        if r["target"].startswith("heavy"):
            continue
        base = floors["rest_floor" if r["target"].startswith("rest") else "floor", r["concurrency"]]
        r["ratio_to_floor"] = round(r["req_s"] / base["req_s"], 3)
        r["p50_to_floor"] = round(r["p50_ms"] / base["p50_ms"], 3)
        cpu = f"{r['cpu_us_per_request']:>11.0f}" if "cpu_us_per_request" in r else ""
        if cpu:
            cpu += f"{r['mean_batch']:>7.1f}" if "mean_batch" in r else f"{'-':>7}"
        traced = (
            f"{r['ratio_to_untraced']:>12.3f}{r['cpu_to_untraced']:>12.3f}"
            if "ratio_to_untraced" in r
            else ""
        )
        print(
            f"{r['target']:<18}{r['concurrency']:>4}{r['req_s']:>10.0f}"
            f"{r['ratio_to_floor']:>9.2f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{cpu}{traced}"
        )
    by_row = {(r["target"], r["concurrency"]): r for r in rows}
    infer_ratios = {
        name: round(by_row[f"infer_{name}", 64]["req_s"] / by_row[name, 64]["req_s"], 3)
        for name in ("unbatched", "batched")
        if (name, 64) in by_row and (f"infer_{name}", 64) in by_row
    }
    for name, ratio in infer_ratios.items():
        print(f"ModelInfer / Predict req/s at c=64, {name}: {ratio:.2f} (target >= 0.9)")
    report = {
        "tool": "h2load",
        "model_infer_to_predict_c64": infer_ratios,
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "seconds": args.seconds,
        "trace_sampling": TRACE_SAMPLING,
        "spans_exported_posts": sink.posts,
        "serve_flags": session,
        "rest_slots_flag": REST_SLOTS,
        "heavy_width": args.heavy_width if args.heavy else None,
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out / f"h2load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
