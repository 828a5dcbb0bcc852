"""Suite 5, overload: more concurrent requests than the batching queues take.

The excess is refused quickly (UNAVAILABLE, or RESOURCE_EXHAUSTED), every admitted
request is answered before its deadline, and once the load stops latency is back to
where it was before.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.reliability.conftest import Size, report
from tests.reliability.models import config_file, write_version
from tests.util.processes import ServerProcess, serving

BURST = 96
DEADLINE_S = 10.0
PREDICT_SLEEP_S = 0.05  # one batch's model time
REFUSED_WITHIN_S = 2.0  # generous: a refusal needs no model time at all
REFUSALS = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def request() -> predict_pb2.PredictRequest:
    out = predict_pb2.PredictRequest()
    out.model_spec.name = "busy"
    out.output_filter.append("y")  # "version" is a scalar: not batchable
    out.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("overload")
    write_version(root / "busy", 1, factor=1.0, predict_sleep=PREDICT_SLEEP_S)
    config = config_file(root / "models.config", {"busy": (root / "busy", "")})
    batching = root / "batching.config"
    batching.write_text(
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 2 }\nnum_batch_threads { value: 1 }\n"
    )
    with serving(
        [
            f"--model_config_file={config}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
        ],
        root / "server.log",
        timeout=120,
    ) as process:
        yield process


def sequential_latencies(server: ServerProcess, n: int = 15) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.monotonic()
        server.predict_stub.Predict(request(), timeout=DEADLINE_S)
        latencies.append(time.monotonic() - started)
    return latencies


def burst(server: ServerProcess) -> list[tuple[grpc.StatusCode, float]]:
    """BURST requests at once; each outcome's code and seconds from its send."""
    outcomes: list[tuple[grpc.StatusCode, float]] = []
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def finished(future: grpc.Future, started: float) -> None:
        code = future.code()
        with lock:
            outcomes.append((code, time.monotonic() - started))
        done.release()

    the_request = request()
    for _ in range(BURST):
        started = time.monotonic()
        future = server.predict_stub.Predict.future(the_request, timeout=DEADLINE_S)
        future.add_done_callback(lambda f, s=started: finished(f, s))
    for _ in range(BURST):
        assert done.acquire(timeout=DEADLINE_S + 30), "a request never finished"
    return outcomes


def test_excess_is_refused_quickly_admitted_meet_deadlines_latency_recovers(
    server: ServerProcess, size: Size
) -> None:
    sequential_latencies(server, 5)  # warm
    before = statistics.median(sequential_latencies(server))
    outcomes: list[tuple[grpc.StatusCode, float]] = []
    for _ in range(size.pick(3, 30)):
        outcomes += burst(server)
    after = statistics.median(sequential_latencies(server))
    ok = [s for code, s in outcomes if code == grpc.StatusCode.OK]
    refused = [s for code, s in outcomes if code in REFUSALS]
    other = [
        (code.name, s)
        for code, s in outcomes
        if code != grpc.StatusCode.OK and code not in REFUSALS
    ]
    report(
        "overload",
        requests_sent=len(outcomes),
        admitted=len(ok),
        refused=len(refused),
        failed_otherwise=len(other),
        slowest_refusal_s=round(max(refused, default=0.0), 3),
        slowest_admitted_s=round(max(ok, default=0.0), 3),
        median_latency_before_ms=round(before * 1000, 1),
        median_latency_after_ms=round(after * 1000, 1),
    )
    assert other == []  # no DEADLINE_EXCEEDED, no INTERNAL: admitted ones all answered
    assert ok and refused, "the burst neither filled the queues nor got through"
    assert max(refused) < REFUSED_WITHIN_S
    assert max(ok) < DEADLINE_S
    assert after < 2 * before + 0.05, f"latency did not recover: {before:.3f}s → {after:.3f}s"
