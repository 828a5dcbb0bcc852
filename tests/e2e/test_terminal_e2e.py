"""What a real server writes to its stderr, and /metrics, read as a newcomer would meet them.

The server runs with TF_CPP_MIN_LOG_LEVEL unset (as a user's shell has it), serves a real
SavedModel on gRPC and REST, answers a good request and refused ones, then stops. Every
line of its stderr must be one of its own JSON log lines: none of TensorFlow's C++ start-up
lines (absl, cudart, cuInit, cpu_feature_guard). At --log_level=debug those are shown.
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
from tensorflow_serving.apis import predict_pb2

from tests.e2e.conftest import FAST_FLAGS
from tests.example_models import export_half_plus_two_tf2
from tests.util.processes import ServerProcess, free_port

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


def start(tmp: Path, *flags: str) -> tuple[ServerProcess, int]:
    export_half_plus_two_tf2(tmp / "models" / "1")
    rest_port = free_port()
    server = ServerProcess(
        [
            "--model_name=half",
            f"--model_base_path={tmp / 'models'}",
            f"--rest_api_port={rest_port}",
            *FAST_FLAGS,
            *flags,
        ],
        tmp / "server.log",
        env=NO_TF_LOG_LEVEL,
    )
    server.wait_serving()
    return server, rest_port


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read().decode()


def predict(x: list[list[float]], name: str = "x") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array(x, dtype=np.float32)))
    return request


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    server, rest_port = start(tmp_path_factory.mktemp("terminal"))
    try:
        reply = server.predict_stub.Predict(predict([[1.0], [4.0]]), timeout=30)
        assert list(tf.make_ndarray(reply.outputs["y"]).ravel()) == [2.5, 4.0]
        base = f"http://127.0.0.1:{rest_port}"
        bad = urllib.request.Request(
            f"{base}/v1/models/half:predict", data=b'{"instances": "not a list"'
        )
        with pytest.raises(urllib.error.HTTPError) as rest_refusal:
            urllib.request.urlopen(bad, timeout=30)
        assert rest_refusal.value.code == 400
        rest_error = json.loads(rest_refusal.value.read())["error"]
        with pytest.raises(grpc.RpcError) as grpc_refusal:  # an input the model lacks
            server.predict_stub.Predict(predict([[1.0]], name="z"), timeout=30)
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
        ("INVALID_ARGUMENT", 400, "half"),
        ("INVALID_ARGUMENT", 400, "half"),
    ]
    assert rejected[0]["reason"] == run.rest_error
    assert rejected[1]["reason"] == run.grpc_error
    assert all(e["level"] == "info" and e["request_id"] for e in rejected)


def test_metrics_serves_what_tf_servings_path_serves(run: Run) -> None:
    def families(text: str) -> dict[str, str]:
        return {f.name: f.type for f in text_string_to_metric_families(text)}

    served = families(run.metrics)
    assert served == families(run.prometheus_path_metrics)
    assert ":tensorflow:serving:request_count" in served
    assert "pyserving_requests" in served


def test_debug_level_shows_tensorflows_native_lines(tmp_path: Path) -> None:
    server, _ = start(tmp_path, "--log_level=debug")
    assert server.stop() == 0
    native = [line for line in server.log_text().splitlines() if TF_NATIVE_LINE.search(line)]
    assert native, server.log_text()[-3000:]
