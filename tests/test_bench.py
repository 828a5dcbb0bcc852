"""The benchmark's own parts: the load generator against the real floor server, and the ratios."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench.floor import FloorService
from bench.loadgen import LoadResult, LoadSpec, predict_requests, run_load
from bench.report import Row, print_rows, ratios, write_results


async def load_against_floor(spec: LoadSpec) -> LoadResult:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(FloorService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        requests = predict_requests(np.random.default_rng(0).random((8, 64), dtype=np.float32))
        return await run_load(f"127.0.0.1:{port}", requests, spec)
    finally:
        await server.stop(None)


def test_requests_are_what_the_tutorial_client_sends() -> None:
    images = np.arange(128, dtype=np.float32).reshape(2, 64)
    first = predict_pb2.PredictRequest.FromString(predict_requests(images)[0])
    assert first.model_spec.name == "mnist"
    assert first.model_spec.signature_name == "predict_images"
    tensor = first.inputs["images"]
    assert [d.size for d in tensor.tensor_shape.dim] == [1, 64]
    np.testing.assert_array_equal(np.frombuffer(tensor.tensor_content, np.float32), images[0])


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_load_generator_measures_a_real_server(mode: str) -> None:
    spec = LoadSpec(
        concurrency=4, duration_s=0.5, warmup_s=0.2, max_requests=10**6, mode=mode, rate=200.0
    )
    result = asyncio.run(load_against_floor(spec))
    assert result.errors == {}
    assert result.requests > 10
    assert result.sent > result.requests  # the warm-up's replies are not measured
    assert 0.4 < result.window_s < 5
    assert result.throughput > 0
    assert 0 < result.percentile_ms(50) <= result.percentile_ms(99)
    if mode == "open":
        assert result.throughput < 400  # paced at 200/s, not as fast as it can


def test_request_count_bounds_a_run() -> None:
    spec = LoadSpec(concurrency=2, duration_s=30, warmup_s=0.0, max_requests=50)
    result = asyncio.run(load_against_floor(spec))
    assert 50 <= result.requests < 60
    assert result.window_s < 30


def test_ratios_are_the_issues_three() -> None:
    def row(target: str, c: int, rps: float, p99: float) -> Row:
        return Row(target, c, rps, p99 / 2, p99, None, 100, {})

    rows = [
        row("floor", 10, 1000, 10),
        row("floor", 64, 2000, 40),
        row("unbatched", 64, 500, 300),
        row("batched", 10, 700, 15),
        row("batched", 64, 1500, 80),
    ]
    assert ratios(rows, "batched") == {
        "batched_vs_unbatched_c64": 3.0,
        "batched_vs_floor_c64": 0.75,
        "p99_batched_vs_floor_c10": 1.5,
    }


def save_tiny_predict_model(path) -> None:
    """A SavedModel with the example's `predict_images` signature: 64 inputs, 10 scores."""
    import tensorflow as tf

    module = tf.Module()
    module.w = tf.Variable(tf.random.stateless_normal([64, 10], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="images")])
    def predict(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": tf.nn.softmax(images @ module.w)}

    module.predict = predict
    tf.saved_model.save(module, str(path), signatures={"predict_images": predict})


def test_model_call_bench_checks_and_times_every_path(tmp_path) -> None:
    from bench import model_call

    save_tiny_predict_model(tmp_path / "1")
    rows = model_call.measure(
        str(tmp_path / "1"), "predict_images", (1, 4), calls=20, rounds=2, evict_mb=1
    )
    assert {(r.path, r.batch, r.calls) for r in rows} == {
        (path, batch, 20) for path in model_call.PATHS for batch in (1, 4)
    }
    assert all(0 < r.p50_us <= r.p99_us for r in rows)
    assert set(model_call.speedups(rows)) == {"1", "4"}
    assert set(model_call.cold_cost(rows)) == {"1", "4"}
    assert "session speed-up at batch 1" in model_call.table(rows)
    assert "session cold / warm at batch 4" in model_call.table(rows)


def test_trace_cost_bench_times_every_variant_and_exports(tmp_path) -> None:
    """Traces off, at 1% and for every request, through the real request path; the sink
    gets the spans, and the bench leaves no OTEL_* variable behind."""
    import os

    from bench import trace_cost
    from bench.h2load import one_image_request
    from tests.util.otlp import OtlpReceiver

    save_tiny_predict_model(tmp_path / "1")
    before = {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}
    request = one_image_request(np.zeros(64, np.float32))
    with OtlpReceiver() as sink:
        made, tracings = trace_cost.handlers(tmp_path / "1", sink.endpoint)
        cpu_us = asyncio.run(trace_cost.measure(made, tracings, request, 20, 2))
        assert {k: v for k, v in os.environ.items() if k.startswith("OTEL_")} == before
        # Every request of the always-sampled variant is a trace: 64 warm-up + 2 x 20.
        roots = sink.wait_for(lambda spans: len([s for s in spans if s.name == "Predict"]) >= 104)
    assert set(cpu_us) == set(trace_cost.VARIANTS)
    assert all(len(values) == 2 and min(values) > 0 for values in cpu_us.values())
    assert {s.name for s in roots} >= {"Predict", "decode", "run", "encode"}
    for tracing in tracings:
        tracing.shutdown()


def test_h2load_measures_the_floor_with_grpc_framed_requests(tmp_path) -> None:
    """The C load generator's run is read right: req/s, and p50 from its per-request log."""
    from bench.floor import canned_reply
    from bench.h2load import check_answer, grpc_frame, h2load, one_image_request
    from bench.targets import floor_target

    request = one_image_request(np.zeros(64, np.float32))
    framed = grpc_frame(request.SerializeToString())
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == len(framed) - 5
    assert predict_pb2.PredictRequest.FromString(framed[5:]) == request
    body = tmp_path / "body"
    body.write_bytes(framed)
    floor = floor_target(tmp_path)
    floor.start()
    try:
        floor.wait_ready()
        check_answer(floor, request)
        assert len(canned_reply().outputs["scores"].float_val) == 10
        result = h2load(floor.address, body, 2, 1.0, tmp_path / "log")
    finally:
        floor.stop()
    assert result["req_s"] > 0 and result["requests"] > 10 and result["http_2xx"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_a_targets_mean_batch_counts_the_batch_runs_inside_the_window(tmp_path) -> None:
    from bench.targets import Target
    from pyserving.adapters.event_log import EventLogWriter
    from pyserving.engine.events import BatchRun, ServerStarted

    writer = EventLogWriter(tmp_path / "events.jsonl")
    writer(
        ServerStarted(pyserving_version="0", flags={}, models=(), config_digest="").stamped(1, 5.0)
    )
    for seq, (at, size) in enumerate([(9.0, 64), (10.0, 3), (11.0, 4), (12.0, 8)], start=2):
        run = BatchRun("m", 1, "serving_default", size, size, 0.001)
        writer(run.stamped(seq, at))
    writer.close()
    target = Target("batched", "", [], 0, tmp_path / "log", tmp_path / "events.jsonl")
    assert target.mean_batch((10.0, 11.5)) == 3.5
    assert target.mean_batch((20.0, 30.0)) is None
    assert Target("floor", "", [], 0, tmp_path / "log").mean_batch((0.0, 99.0)) is None


def test_rows_print_as_a_table_and_results_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"name": "bare", "rate": 17168.4}, {"name": "endpoint", "rate": 812.25}]
    print_rows(rows, [("name", "engine", ""), ("rate", "req/s", ".0f")])
    out = write_results("example", {"rows": rows}, folder=tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["  engine  req/s", "    bare  17168", "endpoint    812"]
    assert json.loads(out.read_text()) == {"rows": rows}


def test_implied_throughput_is_the_lower_bound_and_names_its_side() -> None:
    from bench.cores import CORES, implied

    # One engine at 100 µs a request carries 10k req/s on any machine; front-ends at 1000 µs
    # a request carry 1k req/s per core left to them.
    assert [implied(100, 1000, n) for n in CORES] == [
        {"cores": 4, "req_s": 3000.0, "bound": "front-ends"},
        {"cores": 8, "req_s": 7000.0, "bound": "front-ends"},
        {"cores": 16, "req_s": 10000.0, "bound": "engine"},
        {"cores": 32, "req_s": 10000.0, "bound": "engine"},
    ]
    # workers=0: no front-ends, one process bounds it.
    assert implied(400, 0, 32) == {"cores": 32, "req_s": 2500.0, "bound": "engine"}


BURN_THREAD = """
import sys, threading, time
def burn():
    while time.thread_time() < 0.3:
        pass
    print(time.thread_time(), flush=True)
thread = threading.Thread(target=burn)
thread.start()
thread.join()
sys.stdin.read()
"""


def test_cpu_seconds_counts_every_thread_of_a_live_process() -> None:
    """What bench.cores reads for an engine or a front-end: CPU spent in a thread other
    than the main one counts (the process's own stat sums its threads)."""
    import os
    import subprocess
    import sys

    from tests.util.proc_stats import cpu_seconds

    child = subprocess.Popen(
        [sys.executable, "-c", BURN_THREAD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        burned = float(child.stdout.readline())  # the thread has burned it and ended
        tick = 1 / os.sysconf("SC_CLK_TCK")
        assert burned >= 0.3
        assert cpu_seconds(child.pid) >= burned - 2 * tick
        # The main thread's own figure does not hold the burn: only the sum does.
        main_thread = Path(f"/proc/{child.pid}/task/{child.pid}/stat").read_text()
        fields = main_thread.rsplit(")", 1)[1].split()
        assert (int(fields[11]) + int(fields[12])) * tick < burned / 2
    finally:
        child.kill()
        child.wait()


def test_child_pids_finds_a_processs_front_ends_by_command_line() -> None:
    import os
    import subprocess
    import sys

    from tests.util.proc_stats import child_pids

    marker = f"bench-frontend-marker-{os.getpid()}"
    wait = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    children = [
        subprocess.Popen([*wait, marker], stdin=subprocess.PIPE),
        subprocess.Popen([*wait, marker], stdin=subprocess.PIPE),
        subprocess.Popen([*wait, "other"], stdin=subprocess.PIPE),
    ]
    try:
        assert child_pids(os.getpid(), marker) == sorted(c.pid for c in children[:2])
        assert child_pids(children[0].pid, marker) == []  # children of that pid only
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert child_pids(os.getpid(), marker) == []


def test_echo_engine_answers_a_real_engine_client_with_the_digits_models_shapes() -> None:
    from pyserving.adapters.ipc.data_plane import RemoteDataPlane
    from pyserving.engine.data_plane import InferCall
    from pyserving.engine.request_core import ModelRequest
    from tests.util.ipc_echo import ipc_address, spawn_ready, with_client

    answers = {}

    async def calls(client) -> None:
        plane = RemoteDataPlane(client)
        model = ModelRequest("mnist", None, None)
        answers["signature"] = await plane.signature(model, "predict_images")
        images = np.zeros((3, 64), np.float32)
        call = InferCall(model, "predict_images", {"images": images}, [], None)
        answers["infer"] = await plane.infer(call)
        answers["health"] = await client.call("health", {"service": ""})
        observations = {"observations": [["mnist", "predict", "OK", 0.001]]}
        answers["observe"] = await client.call("observe", observations)

    import sys

    with ipc_address() as address:
        engine = spawn_ready([sys.executable, "-m", "bench.echo_engine", address])
        try:
            with_client(address, calls)
            maps = Path(f"/proc/{engine.pid}/maps").read_text()
        finally:
            engine.kill()
            engine.wait()
    signature = answers["signature"]
    assert signature.name == "predict_images"
    assert {a: (s.dtype, s.shape) for a, s in signature.inputs.items()} == {
        "images": (np.dtype(np.float32), (None, 64))
    }
    assert {a: (s.dtype, s.shape) for a, s in signature.outputs.items()} == {
        "scores": (np.dtype(np.float32), (None, 10))
    }
    prediction = answers["infer"]
    assert (prediction.version, prediction.signature) == (1, "predict_images")
    assert prediction.outputs["scores"].shape == (3, 10)
    np.testing.assert_allclose(prediction.outputs["scores"].sum(axis=1), 1.0, rtol=1e-6)
    assert answers["health"].params == {"status": 1}  # SERVING
    assert (answers["observe"].params, dict(answers["observe"].tensors)) == ({}, {})
    assert "tensorflow_framework" not in maps  # no TensorFlow runtime in the floor


def test_echo_floor_times_hand_started_front_ends_on_one_port(tmp_path: Path) -> None:
    """The floor section's path: the echo engine, two real front-ends started by hand on
    one port, their answers checked, then one h2load run read as each process's CPU per
    request."""
    from bench import cores
    from bench.h2load import grpc_frame, one_image_request
    from tests.util.ipc_echo import ipc_address

    request = one_image_request(np.zeros(64, np.float32))
    body = tmp_path / "predict.grpc"
    body.write_bytes(grpc_frame(request.SerializeToString()))
    with ipc_address() as address:
        server = cores.start_echo_floor(address, 2, tmp_path, tmp_path, cores.FRONTEND_MODULE)
        try:
            cores.wait_and_check(server, request, None)
            result = cores.timed(server, "grpc", body, 1.0, tmp_path)
        finally:
            server.stop()
    assert result["http_2xx"] > 0 and result["req_s"] > 0
    assert result["engine_us"] > 0
    assert len(result["per_frontend_us"]) == 2
    assert result["frontend_us"] == pytest.approx(sum(result["per_frontend_us"]), abs=0.2)
    assert not result["frontends_replaced"]


def test_cores_rows_set_each_worker_count_against_w0_and_the_engine_against_its_floor() -> None:
    from bench.cores import Server, floor_ratio, throughput_rows

    def run(req_s: float, engine_us: float, frontend_us: float) -> dict:
        return {"req_s": req_s, "engine_us": engine_us, "frontend_us": frontend_us}

    servers = [Server(f"w{w}_batched", w, "batched", 1, 2) for w in (0, 2)]
    results = {
        ("w0_batched", "grpc"): run(2000, 500, 0),
        ("w2_batched", "grpc"): run(3400, 150, 700),
        ("w2_batched", "rest"): run(5000, 100, 300),  # no w0 REST run: no ratio
    }
    rows = throughput_rows(servers, results)
    assert [(r["server"], r["protocol"], r["concurrency"], r["vs_w0"]) for r in rows] == [
        ("w0_batched", "grpc", 64, 1.0),
        ("w2_batched", "grpc", 64, 1.7),
        ("w2_batched", "rest", 32, None),
    ]
    on_16 = rows[1]["implied"][2]
    assert on_16["cores"] == 16 and on_16["bound"] == "engine"
    assert on_16["req_s"] == pytest.approx(1e6 / 150)
    echo = run(9000, 60, 600)
    assert floor_ratio(rows, echo, 2) == {
        "workers": 2,
        "engine_us": 150,
        "echo_engine_us": 60,
        "echo_frontend_us": 600,
        "echo_req_s": 9000,
        "ratio": 2.5,
    }
    assert floor_ratio(rows, echo, 4) is None  # no w4_batched run to set against it
    assert floor_ratio(rows, None, 2) is None
