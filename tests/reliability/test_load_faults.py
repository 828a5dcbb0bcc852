"""Suite 2, load faults: a load that raises, one that hangs (--load_timeout_seconds ends
it), a folder that vanishes mid-load, garbage files, a folder replaced while loaded.

Each ends as the lifecycle rules say, the serving versions answer throughout (zero
failed requests), and memory and thread count come back to their level afterwards.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from tests.reliability.conftest import ProcessFigures, process_figures, report, transitions
from tests.reliability.models import AVAILABLE, END, config_file, write_version
from tests.util.processes import ServerProcess

LOAD_TIMEOUT_S = 1.5
HANG_S = 5.0
RSS_BOUND_KIB = 40 * 1024  # python-platform loads: a few MiB of modules and config at most
THREAD_SLACK = 2  # gRPC may start a poller thread under traffic


def predict(server: ServerProcess, model: str, version: int | None = None) -> tuple[int, float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0], np.float32)))
    reply = server.predict_stub.Predict(request, timeout=10)
    return reply.outputs["version"].int64_val[0], reply.outputs["y"].float_val[0]


class Traffic:
    """Threads calling the serving models back to back; every outcome is counted."""

    def __init__(self, server: ServerProcess, models: list[str], threads: int = 4) -> None:
        self.server = server
        self.models = models
        self.sent = 0
        self.failures: list[str] = []
        self.versions: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            model = self.models[index % len(self.models)]
            try:
                version, _ = predict(self.server, model)
                outcome = None
            except grpc.RpcError as exc:
                version, outcome = -1, f"{model}: {exc.code().name} {exc.details()}"
            with self._lock:
                self.sent += 1
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.versions.add((model, version))
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def status(
    server: ServerProcess, model: str, version: int
) -> get_model_status_pb2.ModelVersionStatus | None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    request.model_spec.version.value = version
    try:
        [found] = server.model_stub.GetModelStatus(request, timeout=5).model_version_status
    except grpc.RpcError:
        return None
    return found


def ended_in_error(server: ServerProcess, model: str, version: int) -> bool:
    found = status(server, model, version)
    return found is not None and found.state == END and found.status.error_code != 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("load_faults")
    write_version(root / "steady", 1, factor=3.0)
    write_version(root / "faulty", 1, factor=2.0)
    config = config_file(
        root / "models.config",
        {
            "steady": (root / "steady", ""),
            "faulty": (root / "faulty", "model_version_policy { all {} }"),
        },
    )
    process = ServerProcess(
        [
            f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0.2",
            "--max_num_load_retries=0",
            f"--load_timeout_seconds={LOAD_TIMEOUT_S}",
            f"--event_log={root / 'events.jsonl'}",
        ],
        root / "server.log",
    )
    process.wait_serving()
    yield process
    assert process.stop() == 0


def test_load_faults_end_as_the_rules_say_and_serving_never_fails(
    server: ServerProcess, tmp_path: Path
) -> None:
    root = server.log_path.parent
    faulty = root / "faulty"
    with Traffic(server, ["steady", "faulty"], threads=4):
        time.sleep(1.0)  # request threads and pools exist: the level to come back to
    before = process_figures(server.process.pid)
    faults: list[str] = []
    with Traffic(server, ["steady", "faulty"], threads=4) as traffic:
        # 1. load() raises: the version ends in error; the message reaches GetModelStatus.
        write_version(faulty, 2, load_raise="weights are corrupt")
        server.wait_for(lambda: ended_in_error(server, "faulty", 2), what="v2 in error")
        assert "weights are corrupt" in status(server, "faulty", 2).status.error_message
        faults.append("load raises")

        # 2. load() hangs: --load_timeout_seconds fails it; the late result is discarded.
        hung_at = time.monotonic()
        write_version(faulty, 3, load_sleep=HANG_S)
        server.wait_for(lambda: ended_in_error(server, "faulty", 3), what="v3 timed out")
        assert time.monotonic() - hung_at < HANG_S  # ended by the timeout, not by the load
        assert "timed out after 1.5s" in status(server, "faulty", 3).status.error_message
        faults.append("load hangs")

        # 3. The folder vanishes while load() runs (after it started reading).
        marker = tmp_path / "v4-started"
        write_version(faulty, 4, load_sleep=1.0, reread=True, started_marker=str(marker))
        server.wait_for(marker.exists, timeout=30, what="v4's load to start")
        shutil.rmtree(faulty / "4")
        server.wait_for(
            lambda: (found := status(server, "faulty", 4)) is not None and found.state == END,
            what="v4 ended",
        )
        assert status(server, "faulty", 4).status.error_code != 0
        faults.append("folder vanishes mid-load")

        # 4. Garbage: a model.py that is not Python, and junk beside the version folders.
        garbage = faulty / ".staging-5"
        garbage.mkdir()
        (garbage / "model.py").write_bytes(bytes(range(256)) * 8)
        garbage.rename(faulty / "5")
        (faulty / "not-a-version").mkdir()
        (faulty / "6").write_bytes(b"\x00a file, not a folder")
        (faulty / "7.partial").write_text("junk")
        server.wait_for(lambda: ended_in_error(server, "faulty", 5), what="v5 in error")
        assert status(server, "faulty", 6) is None  # a file named 6 is no version
        faults.append("garbage files")

        # 5. Version 1's folder replaced while it serves: the loaded version keeps serving
        # unchanged (as TF Serving, a loaded version is not re-read); nothing is reloaded.
        shutil.move(faulty / "1", root / "faulty-1-old")
        write_version(faulty, 1, factor=100.0)
        time.sleep(1.5)  # several polls
        assert predict(server, "faulty", 1) == (1, 2.0)  # x[0]=1.0 times the loaded factor 2
        assert status(server, "faulty", 1).state == AVAILABLE
        faults.append("folder replaced while loaded")
        time.sleep(0.5)
    assert traffic.failures == []
    assert traffic.versions == {("steady", 1), ("faulty", 1)}

    # The hung load's thread finishes, its servable is unloaded and dropped.
    server.wait_for(
        lambda: "late_load_discarded" in server.log_text(), timeout=30, what="late load dropped"
    )
    faulty_1 = [t for t in transitions(root / "events.jsonl") if t.model == "faulty"]
    assert [(t.src, t.dst) for t in faulty_1 if t.version == 1] == [
        ("new", "loading"),
        ("loading", "available"),
    ]
    assert [(t.src, t.dst) for t in faulty_1 if t.version == 3] == [
        ("new", "loading"),
        ("loading", "error"),
    ]
    after = settle_threads(server, before)
    report(
        "load_faults",
        requests_sent=traffic.sent,
        requests_failed=len(traffic.failures),
        faults_injected=len(faults),
        rss_before_mib=round(before.rss_kib / 1024, 1),
        rss_after_mib=round(after.rss_kib / 1024, 1),
        threads_before=before.threads,
        threads_after=after.threads,
    )
    assert after.rss_kib - before.rss_kib < RSS_BOUND_KIB
    assert after.threads <= before.threads + THREAD_SLACK


def settle_threads(server: ServerProcess, before: ProcessFigures) -> ProcessFigures:
    """Figures once the thread count is back (abandoned loads end a little after the log)."""
    deadline = time.monotonic() + 20
    while True:
        after = process_figures(server.process.pid)
        if after.threads <= before.threads or time.monotonic() > deadline:
            return after
        time.sleep(0.2)
