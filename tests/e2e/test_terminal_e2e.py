"""What a real server writes to its stderr, and /metrics, read as a newcomer would meet them.

The server runs with TF_CPP_MIN_LOG_LEVEL unset (as a user's shell has it), serves the
tutorial's SavedModel on gRPC and REST, answers a good request and refused ones (one a
shape TensorFlow's MatMul refuses, which logs local_rendezvous' "aborting" line when
TensorFlow's log is on), then stops. Every line of its stderr must be one of its own JSON
log lines: none of TensorFlow's C++ lines (absl, cudart, cuInit, cpu_feature_guard,
local_rendezvous). At --log_level=debug they are shown.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.processes import ServerProcess

# TensorFlow's C++ log lines (absl/glog format: I1207 12:00:00.000000 1234 file.cc:12] ...)
# and absl's note printed before its log is initialised.
TF_NATIVE_LINE = re.compile(r"^[IWEF]\d{4} |All log messages before absl::InitializeLog")
NO_TF_LOG_LEVEL = {"TF_CPP_MIN_LOG_LEVEL": None}  # unset, as in a user's shell


@dataclass
class Run:
    stderr: list[str]
    metrics: str
    prometheus_path_metrics: str
    rest_error: str
    grpc_error: str


def start(models: TrainedModels, tmp: Path, *flags: str) -> tuple[ServerProcess, int]:
    models.copy_version(1, tmp / "models")
    server = ServerProcess(
        ["--model_name=mnist", f"--model_base_path={tmp / 'models'}", *FAST_FLAGS, *flags],
        tmp / "server.log",
        env=NO_TF_LOG_LEVEL,
        rest=True,
    )
    server.wait_serving()
    return server, server.rest_port


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read().decode()


@pytest.fixture(scope="module")
def run(trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    server, rest_port = start(trained_models, tmp_path_factory.mktemp("terminal"))
    try:
        reply = server.predict_stub.Predict(predict_request(np.zeros((2, 64))), timeout=30)
        assert tf.make_ndarray(reply.outputs["scores"]).shape == (2, 10)
        base = f"http://127.0.0.1:{rest_port}"
        bad = urllib.request.Request(
            f"{base}/v1/models/mnist:predict", data=b'{"instances": "not a list"'
        )
        with pytest.raises(urllib.error.HTTPError) as rest_refusal:
            urllib.request.urlopen(bad, timeout=30)
        assert rest_refusal.value.code == 400
        rest_error = json.loads(rest_refusal.value.read())["error"]
        with pytest.raises(grpc.RpcError) as grpc_refusal:  # 63 pixels: MatMul refuses
            server.predict_stub.Predict(predict_request(np.zeros((1, 63))), timeout=30)
        assert grpc_refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        metrics = get(f"{base}/metrics")
        prometheus_path_metrics = get(f"{base}/monitoring/prometheus/metrics")
    finally:
        assert server.stop() == 0
    yield Run(
        server.log_text().splitlines(),
        metrics,
        prometheus_path_metrics,
        rest_error,
        grpc_refusal.value.details(),
    )


def test_every_stderr_line_is_the_servers_own_json(run: Run) -> None:
    assert run.stderr, "the server logged nothing"
    for line in run.stderr:
        assert not TF_NATIVE_LINE.search(line), line
        assert isinstance(json.loads(line), dict), line  # piped stderr: JSON by default
    events = [json.loads(line)["message"] for line in run.stderr]
    assert "grpc_server_listening" in events
    assert events[-1] == "server_stopped"


def test_each_rejected_request_leaves_one_access_log_line(run: Run) -> None:
    rejected = [
        entry for entry in map(json.loads, run.stderr) if entry["message"] == "request_rejected"
    ]
    assert [(e["code"], e["http_status"], e["model"]) for e in rejected] == [
        ("INVALID_ARGUMENT", 400, "mnist"),
        ("INVALID_ARGUMENT", 400, "mnist"),
    ]
    assert rejected[0]["reason"] == run.rest_error
    assert rejected[1]["reason"] == run.grpc_error
    assert run.grpc_error.startswith("Matrix size-incompatible: In[0]: [1,63]")
    assert all(e["level"] == "info" and e["request_id"] for e in rejected)


def test_metrics_serves_what_tf_servings_path_serves(run: Run) -> None:
    def families(text: str) -> dict[str, str]:
        return {f.name: f.type for f in text_string_to_metric_families(text)}

    served = families(run.metrics)
    assert served == families(run.prometheus_path_metrics)
    assert ":tensorflow:serving:request_count" in served
    assert "pyserving_requests" in served


def test_debug_level_shows_tensorflows_native_lines(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    server, _ = start(trained_models, tmp_path, "--log_level=debug")
    assert server.stop() == 0
    native = [line for line in server.log_text().splitlines() if TF_NATIVE_LINE.search(line)]
    assert native, server.log_text()[-3000:]
