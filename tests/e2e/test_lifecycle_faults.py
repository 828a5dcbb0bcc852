"""Lifecycle faults against real servers: a corrupt version, a slow copy, load retries,
and a graceful stop with requests in flight."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from tests.e2e.conftest import TrainedModels, predict_request
from tests.util.processes import ServerProcess, serving
from tests.util.python_models import write_python_version
from tests.util.waiting import eventually
from tests.util.workers import both_modes

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
SOURCE_POLL_S = 0.5


def log_lines(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]


def served_version(server: ServerProcess) -> int:
    request = predict_request(np.zeros((1, 64), np.float32))
    return server.predict_stub.Predict(request, timeout=10).model_spec.version.value


@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("faults")
    trained_models.copy_version(1, root / "models")
    with serving(
        [
            "--model_name=mnist",
            f"--model_base_path={root / 'models'}",
            f"--file_system_poll_wait_seconds={SOURCE_POLL_S}",
            "--max_num_load_retries=2",
            "--load_retry_interval_micros=100000",
        ],
        root / "server.log",
    ) as process:
        yield process


def base_path(server: ServerProcess) -> Path:
    return server.log_path.parent / "models"


def test_corrupt_version_ends_in_error_and_the_previous_keeps_answering(
    server: ServerProcess, trained_models: TrainedModels
) -> None:
    staging = base_path(server) / ".staging-5"
    shutil.copytree(trained_models.export_dir / "1", staging)
    (staging / "saved_model.pb").write_bytes(b"\x00garbage, not a SavedModel\xff" * 10)
    staging.rename(base_path(server) / "5")

    def failed() -> bool:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "mnist"
        request.model_spec.version.value = 5
        try:
            [status] = server.model_stub.GetModelStatus(request, timeout=5).model_version_status
        except grpc.RpcError:
            return False
        return status.state == END and status.status.error_code != 0

    server.wait_for(failed, what="version 5 in error")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "mnist"
    request.model_spec.version.value = 5
    [status] = server.model_stub.GetModelStatus(request, timeout=5).model_version_status
    assert status.status.error_message  # the loader's message, for the operator
    assert served_version(server) == 1
    attempts = [
        (line["attempt"], line["will_retry"])
        for line in log_lines(server)
        if line.get("message") == "load_attempt_failed" and line.get("version") == 5
    ]
    assert attempts == [(1, True), (2, True), (3, False)]  # --max_num_load_retries=2
    shutil.rmtree(base_path(server) / "5")


def test_slow_copy_is_loaded_once_complete_without_a_failed_load(
    server: ServerProcess, trained_models: TrainedModels
) -> None:
    source = trained_models.export_dir / "2"
    target = base_path(server) / "6"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    # saved_model.pb first, as `cp` may well do; the rest trickles in over ~6 poll periods.
    files.sort(key=lambda p: p.name != "saved_model.pb")
    chunk_pause = 0.05
    served_during_copy: list[int] = []
    for path in files:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        pieces = max(1, int(3 * SOURCE_POLL_S / chunk_pause / len(files)) + 1)
        step = max(1, -(-len(data) // pieces))
        with open(out, "wb") as f:
            for start in range(0, max(len(data), 1), step):
                f.write(data[start : start + step])
                f.flush()
                os.fsync(f.fileno())
                time.sleep(chunk_pause)
        served_during_copy.append(served_version(server))
    assert set(served_during_copy) == {1}
    server.wait_for(lambda: served_version(server) == 6, what="version 6 serving")
    lines = log_lines(server)
    assert not [
        line
        for line in lines
        if line.get("version") == 6
        and (line.get("message") == "load_attempt_failed" or line.get("state") == "error")
    ]
    assert any(line.get("message") == "version_incomplete" for line in lines)
    shutil.rmtree(target)
    server.wait_for(lambda: served_version(server) == 1, what="back on version 1")


def test_deleting_the_base_path_keeps_serving_and_logs_an_error(server: ServerProcess) -> None:
    base = base_path(server)
    moved = base.with_name("models-away")

    def errors() -> list[str]:
        return [
            line["error"]
            for line in log_lines(server)
            if line.get("message") == "base_path_unreadable"
        ]

    def wait_errors(count: int, what: str) -> None:
        server.wait_for(lambda: len(errors()) >= count, what=what)

    before = len(errors())
    base.rename(moved)
    try:
        wait_errors(before + 1, "the error about the missing base path")
        # Each distinct error is logged once, so changing the error proves the source
        # polled again (twice) while the base path was unusable: nothing may unload.
        base.write_text("a file where the folder was")
        wait_errors(before + 2, "the error about a file in the folder's place")
        base.unlink()
        wait_errors(before + 3, "the missing base path again")
        assert len(set(errors()[before:])) == 2, errors()[before:]
        assert served_version(server) == 1
        assert server.version_states("mnist")[1] == AVAILABLE
    finally:
        base.unlink(missing_ok=True)
        moved.rename(base)


class TimedClient:
    """Threads sending large Predict requests back to back; each outcome with its times."""

    def __init__(self, server: ServerProcess, images: np.ndarray, threads: int = 8) -> None:
        self.request = predict_request(images)
        self.server = server
        self.stop = threading.Event()
        self.outcomes: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.server.predict_stub.Predict(self.request, timeout=30)
                outcome = "OK"
            except grpc.RpcError as exc:
                outcome = f"{exc.code().name}: {exc.details()}"
            with self._lock:
                self.outcomes.append((started, time.monotonic(), outcome))
            if outcome != "OK":
                return  # "shutting down": go to another replica, as behind a load balancer


# A python model whose call announces itself (a file in `markers`) and then takes a second:
# a request to it is certainly inside the server, past the drain gate, when SIGTERM comes.
SLOW_MODEL_PY = """
import json
import os
import time
import uuid

SIGNATURES = {"serving_default": {"inputs": {"x": ("float32", [None])},
                                  "outputs": {"y": ("float32", [None])}}}


def load(path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)["markers"]


def predict(markers, inputs):
    open(os.path.join(markers, uuid.uuid4().hex), "w").close()
    time.sleep(1.0)
    return {"y": inputs["x"] + 1}
"""


def slow_request(server: ServerProcess, outcomes: list[tuple[float, float, str]]) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    started = time.monotonic()
    try:
        reply = server.predict_stub.Predict(request, timeout=30)
        outcome = "OK" if list(reply.outputs["y"].float_val) == [2.0] else f"wrong: {reply}"
    except grpc.RpcError as exc:
        outcome = f"{exc.code().name}: {exc.details()}"
    outcomes.append((started, time.monotonic(), outcome))


@both_modes
def test_sigterm_finishes_in_flight_requests_and_unloads(
    trained_models: TrainedModels, start_server, tmp_path: Path
) -> None:
    trained_models.copy_version(1, tmp_path / "models")
    trained_models.copy_version(2, tmp_path / "other")
    markers = tmp_path / "markers"
    markers.mkdir()
    write_python_version(tmp_path / "slow", 1, SLOW_MODEL_PY, {"markers": str(markers)})
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {"
        f' config {{ name: "mnist" base_path: "{tmp_path / "models"}" }}'
        f' config {{ name: "other" base_path: "{tmp_path / "other"}" }}'
        f' config {{ name: "slow" base_path: "{tmp_path / "slow"}" model_platform: "python" }}'
        " }"
    )
    server = start_server(f"--model_config_file={config}", "--num_request_threads=4")
    server.wait_serving()
    images = np.random.default_rng(1).random((5000, 64), dtype=np.float32)
    client = TimedClient(server, images)
    for thread in client.threads:
        thread.start()
    eventually(
        lambda: sum(o[2] == "OK" for o in list(client.outcomes)) >= 8,
        60,
        0.05,
        lambda: f"8 answers: {client.outcomes[:3]}",
    )
    slow_outcomes: list[tuple[float, float, str]] = []
    slow = [threading.Thread(target=slow_request, args=(server, slow_outcomes)) for _ in range(3)]
    for thread in slow:
        thread.start()
    eventually(
        lambda: len(list(markers.iterdir())) >= len(slow),
        60,
        message="all three slow requests inside the model call",
    )
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    client.stop.set()
    for thread in [*client.threads, *slow]:
        thread.join(30)

    assert [o[2] for o in slow_outcomes] == ["OK"] * len(slow), slow_outcomes
    outcomes = list(client.outcomes) + slow_outcomes
    in_flight = [o for o in outcomes if o[0] < signalled < o[1]]
    # A request still on the wire when the server stopped listening is refused with
    # UNAVAILABLE (safe to retry); one the server had accepted is answered.
    answered = [o for o in in_flight if o[2] == "OK"]
    assert answered, f"no request in flight at SIGTERM was answered: {in_flight}"
    lost = [o[2] for o in outcomes if o[2] != "OK" and not o[2].startswith("UNAVAILABLE")]
    assert not lost, [
        (round(a - signalled, 3), round(b - signalled, 3), o) for a, b, o in outcomes if o != "OK"
    ][:20]
    print(f"{len(answered)} of {len(in_flight)} requests in flight at SIGTERM answered")

    lines = log_lines(server)
    ends = {
        (line["model"], line["version"])
        for line in lines
        if line.get("message") == "version_transition" and line.get("state") == "end"
    }
    assert ends == {("mnist", 1), ("other", 2), ("slow", 1)}
    assert lines[-1]["message"] == "server_stopped", lines[-3:]
