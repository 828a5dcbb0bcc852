"""The tutorial, end to end: serve v1, `cp -r` v2 in while a client runs, no request fails."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_status_pb2

from tests.e2e.conftest import (
    FAST_FLAGS,
    TrainedModels,
    error_rate,
    predict_request,
    run_example_client,
)
from tests.util.processes import ServerProcess

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


class BackgroundClient:
    """Threads sending Predict back to back; records every outcome per thread."""

    def __init__(self, server: ServerProcess, images: np.ndarray, threads: int = 4) -> None:
        self.server = server
        self.request = predict_request(images[:1])
        self.stop = threading.Event()
        self.outcomes: list[list[int | str]] = [[] for _ in range(threads)]
        self.threads = [
            threading.Thread(target=self._run, args=(outcomes,)) for outcomes in self.outcomes
        ]

    def _run(self, outcomes: list[int | str]) -> None:
        while not self.stop.is_set():
            try:
                reply = self.server.predict_stub.Predict(self.request, timeout=10)
                outcomes.append(reply.model_spec.version.value)
            except grpc.RpcError as exc:
                outcomes.append(f"{exc.code().name}: {exc.details()}")

    def __enter__(self) -> BackgroundClient:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_tutorial_swap_without_a_gap(
    trained_models: TrainedModels, start_server, tmp_path: Path
) -> None:
    watched = tmp_path / "monitored"
    trained_models.copy_version(1, watched)
    event_log = tmp_path / "events.jsonl"
    server = start_server(
        "--model_name=mnist",
        f"--model_base_path={watched}",
        f"--event_log={event_log}",
        *FAST_FLAGS,
    )
    server.wait_serving()
    first = server.predict_stub.Predict(predict_request(trained_models.dataset.test_images[:1]))
    assert first.model_spec.version.value == 1
    assert first.model_spec.signature_name == "predict_images"
    v1_error = error_rate(server, trained_models.dataset)
    v1_client_error = run_example_client(server)

    with BackgroundClient(server, trained_models.dataset.test_images) as client:
        server.wait_for(
            lambda: all(1 in thread for thread in client.outcomes), 30, "every client on v1"
        )
        # Exactly the tutorial's step: a plain, non-atomic copy into the watched folder.
        subprocess.run(["cp", "-r", str(trained_models.export_dir / "2"), str(watched)], check=True)
        server.wait_for(
            lambda: server.version_states("mnist") == {1: END, 2: AVAILABLE},
            what="v1 END and v2 AVAILABLE",
        )
        server.wait_for(
            lambda: all(2 in thread for thread in client.outcomes), 30, "every client on v2"
        )

    outcomes = [o for thread in client.outcomes for o in thread]
    failures = [o for o in outcomes if isinstance(o, str)]
    assert not failures, failures[:5]
    assert {1, 2} <= set(outcomes), "the client should have seen both versions"
    for thread in client.outcomes:  # once a thread sees v2, it never goes back to v1
        assert 1 not in thread[thread.index(2) :] if 2 in thread else True

    v2_error = error_rate(server, trained_models.dataset)
    v2_client_error = run_example_client(server)
    assert v2_error < v1_error
    assert v2_client_error < v1_client_error

    assert server.stop() == 0
    log_lines = [
        json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")
    ]
    messages = {line["message"] for line in log_lines}
    assert {"version_found", "version_transition", "first_request", "server_stopped"} <= messages

    events = [json.loads(line) for line in event_log.read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    path = {
        v: [e["dst"] for e in events if e["kind"] == "transition" and e["version"] == v]
        for v in (1, 2)
    }
    assert path[1] == ["loading", "available", "unloading", "end"]
    assert path[2] == ["loading", "available", "unloading", "end"]  # shutdown unloads it too
    assert events[0]["kind"] == "server_started"
    assert re.fullmatch(r"[0-9a-f]{64}", events[0]["config_digest"])
