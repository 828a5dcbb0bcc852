"""TensorFlow's profiler against a running server, as TensorBoard's "Capture profile" does:
tf.profiler.experimental.client.trace on the gRPC port writes an .xplane.pb naming the
served graph's ops; a window with no model execution gets TensorFlow's own error; and
--enable_profiler=false takes the service off the port."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request


def serve_digits(start_server, trained_models: TrainedModels, tmp_path: Path, *flags: str):
    models = tmp_path / "mnist"
    trained_models.copy_version(2, models)
    server = start_server("--model_name=mnist", f"--model_base_path={models}", *FAST_FLAGS, *flags)
    server.wait_serving()
    return server


def xplane_files(logdir: Path) -> list[Path]:
    return sorted(logdir.rglob("*.xplane.pb"))


def test_a_capture_during_traffic_writes_a_trace_of_the_models_ops(
    tmp_path: Path, start_server, trained_models: TrainedModels
) -> None:
    # Off by default here (TensorFlow's profiler server opens an extra port): ask for it.
    server = serve_digits(start_server, trained_models, tmp_path, "--enable_profiler=true")
    images = trained_models.dataset.test_images[:4].astype(np.float32)
    stop, answered, failures = threading.Event(), [], []

    def traffic() -> None:
        while not stop.is_set():
            try:
                server.predict_stub.Predict(predict_request(images), timeout=30)
                answered.append(1)
            except grpc.RpcError as exc:
                failures.append(exc.details())

    thread = threading.Thread(target=traffic)
    thread.start()
    logdir = tmp_path / "profile"
    try:
        server.wait_for(lambda: answered, what="traffic")
        tf.profiler.experimental.client.trace(
            f"grpc://127.0.0.1:{server.port}", str(logdir), 2000, num_tracing_attempts=2
        )
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == []
    assert "profiler_service_enabled" in server.log_text()
    files = xplane_files(logdir)
    assert len(files) == 1, files
    trace = files[0].read_bytes()
    assert b"MatMul" in trace and b"Softmax" in trace  # the served graph's ops


def test_a_capture_without_model_execution_says_so(
    tmp_path: Path, start_server, trained_models: TrainedModels
) -> None:
    server = serve_digits(start_server, trained_models, tmp_path, "--enable_profiler=true")
    logdir = tmp_path / "profile"
    with pytest.raises(Exception, match="No trace event was collected"):
        tf.profiler.experimental.client.trace(
            f"grpc://127.0.0.1:{server.port}", str(logdir), 500, num_tracing_attempts=1
        )
    # TensorFlow still writes the empty session; it holds none of the model's ops
    assert all(b"MatMul" not in f.read_bytes() for f in xplane_files(logdir))


def test_enable_profiler_false_takes_the_service_off_the_port(
    tmp_path: Path, start_server, trained_models: TrainedModels
) -> None:
    server = serve_digits(start_server, trained_models, tmp_path, "--enable_profiler=false")
    profile = server.channel.unary_unary("/tensorflow.ProfilerService/Profile")
    with pytest.raises(grpc.RpcError) as caught:
        profile(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "profiler_service_enabled" not in server.log_text()
