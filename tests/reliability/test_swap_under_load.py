"""Suite 1, swap under load: 32 concurrent clients for the whole run while versions are
swapped (availability policy). Zero failed requests; every reply came from a version
that was available at some moment between its request and its reply (the server's own
event log says when); requests in flight when their version's unload began finish on it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.reliability.conftest import Size, TrainedModels, report
from tests.reliability.models import config_file, write_version
from tests.reliability.swapping import serving_windows, swap
from tests.util.processes import ServerProcess, serving
from tests.util.workers import both_modes

CONCURRENCY = 32
CLOCK_SLACK_S = 0.01  # client and server read the same machine's clock


@dataclass(frozen=True)
class Outcome:
    sent: float
    received: float
    version: int | None  # None: failed
    error: str = ""


class Clients:
    """CONCURRENCY grpc.aio callers on their own thread, sending back to back until stopped."""

    def __init__(self, port: int, request: predict_pb2.PredictRequest) -> None:
        self._port = port
        self._request = request
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()))

    async def _main(self) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self._port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            await asyncio.gather(*(self._caller(stub) for _ in range(CONCURRENCY)))

    async def _caller(self, stub: prediction_service_pb2_grpc.PredictionServiceStub) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                reply = await stub.Predict(self._request, timeout=30)
                outcome = Outcome(sent, time.time(), reply.model_spec.version.value)
            except grpc.RpcError as exc:
                outcome = Outcome(sent, time.time(), None, f"{exc.code().name}: {exc.details()}")
            self.outcomes.append(outcome)

    def __enter__(self) -> Clients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def mnist_request() -> predict_pb2.PredictRequest:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "predict_images"
    images = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


@both_modes
def test_swaps_under_load_lose_no_request(
    trained_models: TrainedModels, tmp_path: Path, size: Size, workers: int
) -> None:
    swaps = size.pick(6, 20)
    base = tmp_path / "mnist"
    trained_models.copy_version(1, base)
    log = tmp_path / "events.jsonl"
    server = ServerProcess(
        [
            "--model_name=mnist",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=0.1",
            "--aspired_version_policy=availability",
            f"--event_log={log}",
        ],
        tmp_path / "server.log",
        workers=workers,
    )
    try:
        server.wait_serving(timeout=120)
        with Clients(server.port, mnist_request()) as clients:
            server.wait_for(lambda: clients.outcomes, 30, "the first answer under load")
            for step in range(swaps):
                swap(server, trained_models, base, "mnist", old=step + 1, new=step + 2)
            server.wait_for(
                lambda: any(o.version == swaps + 1 for o in list(clients.outcomes)),
                30,
                f"an answer from the last version, {swaps + 1}",
            )
    finally:
        assert server.stop() == 0
    outcomes = clients.outcomes
    failed = [o for o in outcomes if o.version is None]
    windows = serving_windows(log, "mnist")
    outside = [
        o
        for o in outcomes
        if o.version is not None
        and not (
            o.received >= windows[o.version].available - CLOCK_SLACK_S
            and o.sent <= windows[o.version].unloading + CLOCK_SLACK_S
        )
    ]
    # In flight when the unload of their version began, and finished on that version.
    finished_on_unloading = [
        o for o in outcomes if o.version is not None and o.received > windows[o.version].unloading
    ]
    report(
        "swap_under_load",
        concurrency=CONCURRENCY,
        swaps=swaps,
        requests_sent=len(outcomes),
        requests_failed=len(failed),
        replies_outside_window=len(outside),
        finished_on_unloading_version=len(finished_on_unloading),
        versions_served=sorted({o.version for o in outcomes if o.version is not None}),
    )
    assert failed == [], failed[:5]
    assert outside == [], outside[:5]
    assert {o.version for o in outcomes} == set(range(1, swaps + 2))  # every version served
    assert all(o.received <= windows[o.version].ended + 1.0 for o in finished_on_unloading)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_version(tmp_path / "slow", 1, factor=1.0, slow_started=str(tmp_path / "slow-started"))
    config = config_file(tmp_path / "models.config", {"slow": (tmp_path / "slow", "")})
    with serving(
        [
            f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0.1",
            f"--event_log={tmp_path / 'events.jsonl'}",
        ],
        tmp_path / "server.log",
        timeout=120,
    ) as server:
        yield server


def test_a_request_in_flight_when_its_version_unloads_finishes_on_it(
    slow_server: ServerProcess, tmp_path: Path
) -> None:
    """Deterministic: a 2 s request holds version 1 while version 2 replaces it."""
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.model_spec.signature_name = "slow"
    request.inputs["seconds"].CopyFrom(tf.make_tensor_proto(np.float32(2.0)))
    future = slow_server.predict_stub.Predict.future(request, timeout=30)
    slow_server.wait_for(
        (tmp_path / "slow-started").exists, 30, "the request to run on version 1", 0.01
    )
    write_version(tmp_path / "slow", 2, factor=1.0)
    reply = future.result()
    received = time.time()
    assert reply.outputs["version"].int64_val == [1]
    windows = serving_windows(tmp_path / "events.jsonl", "slow")
    slow_server.wait_for(
        lambda: serving_windows(tmp_path / "events.jsonl", "slow")[1].ended < float("inf"),
        what="version 1 ended",
    )
    windows = serving_windows(tmp_path / "events.jsonl", "slow")
    assert windows[1].unloading < received  # its unload began while the request ran
    assert windows[1].ended >= windows[1].unloading
    assert windows[2].available < windows[1].unloading  # availability: new before old left
