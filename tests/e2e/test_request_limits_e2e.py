"""`--grpc_max_threads` and `--rest_api_num_threads` on a real server, with a python-platform
model whose call waits on a gate file, so "a request is in flight" is a fact, not a timing."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.e2e.conftest import FAST_FLAGS
from tests.util.processes import free_port
from tests.util.waiting import eventually

GATED_MODEL = """
import os
import time

import numpy as np

SIGNATURES = {"serving_default": {"inputs": {"x": ("float32", [None])},
                                  "outputs": {"y": ("float32", [None])}}}
HERE = os.path.dirname(os.path.abspath(__file__))


def predict(state, inputs):
    x = inputs["x"]
    if x.size and x[0] < 0:  # a gated call: say it started, wait for the gate
        open(os.path.join(HERE, "..", "..", "started"), "a").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(HERE, "..", "..", "gate")):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
    return {"y": x * 2}
"""


def write_model(tmp: Path) -> Path:
    version = tmp / "models" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(GATED_MODEL)
    return tmp / "models"


def request(x: float) -> predict_pb2.PredictRequest:
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "gated"
    message.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], np.float32)))
    return message


def wait_file(path: Path, timeout: float = 30) -> None:
    eventually(path.exists, timeout, message=f"{path} to appear")


def test_grpc_max_threads_refuses_beyond_the_limit(tmp_path: Path, start_server) -> None:
    server = start_server(
        "--model_name=gated", f"--model_base_path={write_model(tmp_path)}",
        "--model_platform=python", "--grpc_max_threads=1", *FAST_FLAGS,
    )  # fmt: skip
    server.wait_serving()
    with ThreadPoolExecutor(1) as pool:
        gated = pool.submit(server.predict_stub.Predict, request(-1.0), timeout=60)
        wait_file(tmp_path / "started")
        try:
            server.predict_stub.Predict(request(1.0), timeout=30)
            raise AssertionError("a second request beyond --grpc_max_threads=1 was served")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        (tmp_path / "gate").touch()
        assert list(gated.result(60).outputs["y"].float_val) == [-2.0]
    assert list(server.predict_stub.Predict(request(3.0), timeout=30).outputs["y"].float_val) == [
        6.0
    ]


def test_rest_api_num_threads_queues_beyond_the_limit(tmp_path: Path, start_server) -> None:
    rest_port = free_port()
    server = start_server(
        "--model_name=gated", f"--model_base_path={write_model(tmp_path)}",
        "--model_platform=python", f"--rest_api_port={rest_port}",
        "--rest_api_num_threads=1", *FAST_FLAGS,
    )  # fmt: skip
    server.wait_serving()

    def post(x: float) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{rest_port}/v1/models/gated:predict",
            data=json.dumps({"inputs": [x]}).encode(),
        )
        with urllib.request.urlopen(req, timeout=60) as reply:
            return json.loads(reply.read())

    with ThreadPoolExecutor(2) as pool:
        gated = pool.submit(post, -1.0)
        wait_file(tmp_path / "started")
        waiting = pool.submit(post, 1.0)
        time.sleep(0.5)
        assert not waiting.done()  # queued behind the one slot, not refused
        assert server.predict_stub.Predict(request(2.0), timeout=30)  # gRPC is not held up
        (tmp_path / "gate").touch()
        assert gated.result(60) == {"outputs": [-2.0]}
        assert waiting.result(60) == {"outputs": [2.0]}
