"""TensorFlow's profiler against a running server, as TensorBoard's "Capture profile" does:
tf.profiler.experimental.client.trace on the gRPC port (on by default, as in TF Serving)
writes an .xplane.pb naming the served graph's ops; a window with no model execution gets
TensorFlow's own error; Terminate ends a session early, a second session meanwhile is
refused as TensorFlow refuses it, no other port is opened; and --enable_profiler=false
takes the service off the port."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.profiling import trace_under_traffic


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
    server = serve_digits(start_server, trained_models, tmp_path)  # on by default
    images = trained_models.dataset.test_images[:4].astype(np.float32)

    def predict() -> str | None:
        try:
            server.predict_stub.Predict(predict_request(images), timeout=30)
        except grpc.RpcError as exc:
            return exc.details()
        return None

    logdir = tmp_path / "profile"
    assert trace_under_traffic(server, predict, logdir, 2000, attempts=2) == []
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
    files = xplane_files(logdir)
    assert files, f"no session written under {logdir}"
    assert all(b"MatMul" not in f.read_bytes() for f in files)


def test_enable_profiler_false_takes_the_service_off_the_port(
    tmp_path: Path, start_server, trained_models: TrainedModels
) -> None:
    server = serve_digits(start_server, trained_models, tmp_path, "--enable_profiler=false")
    profile = server.channel.unary_unary("/tensorflow.ProfilerService/Profile")
    with pytest.raises(grpc.RpcError) as caught:
        profile(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "profiler_service_enabled" not in server.log_text()


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (numbers below 16, payloads below 128 bytes)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def profile_request(logdir: Path, session_id: str, duration_ms: int) -> bytes:
    """tensorflow.ProfileRequest as the client sends it: opts (4), repository_root (5),
    session_id (6), host_name (7)."""
    from tensorflow.tsl.profiler.protobuf import profiler_options_pb2

    opts = profiler_options_pb2.ProfileOptions(
        version=1, host_tracer_level=2, device_tracer_level=1, duration_ms=duration_ms
    )
    return (
        _field(4, opts.SerializeToString())
        + _field(5, str(logdir).encode())
        + _field(6, session_id.encode())
        + _field(7, b"client:1")
    )


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its sockets' inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_terminate_ends_a_session_and_a_second_one_meanwhile_is_refused(
    tmp_path: Path, start_server, trained_models: TrainedModels
) -> None:
    server = serve_digits(start_server, trained_models, tmp_path)
    profile = server.channel.unary_unary("/tensorflow.ProfilerService/Profile")
    terminate = server.channel.unary_unary("/tensorflow.ProfilerService/Terminate")
    logdir = tmp_path / "profile"

    def start_long() -> grpc.Future:
        return profile.future(profile_request(logdir, "long", 600_000), timeout=60)

    long_one = start_long()
    for attempt in range(200):  # until the long session is running
        if long_one.done():  # it lost the race for the profiler to a short one: again
            error = long_one.exception()
            assert error is not None and error.details() == "Another profiling session active."
            long_one = start_long()
        try:
            profile(profile_request(logdir, f"short-{attempt}", 0), timeout=30)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INTERNAL
            assert exc.details() == "Another profiling session active."
            break
    else:
        raise AssertionError("a second session was never refused")
    assert terminate(bytes([1 << 3 | 2, 4]) + b"long", timeout=10) == b""
    reply = long_one.result(timeout=30)  # ended by Terminate, not after 600 s
    assert reply in (b"", b"\x38\x01")  # ProfileResponse: empty_trace (7) or nothing
    assert (logdir / "long" / "client_1.xplane.pb").is_file()  # SaveXSpace's path, ':' -> '_'
    monitor = server.channel.unary_unary("/tensorflow.ProfilerService/Monitor")
    with pytest.raises(grpc.RpcError) as caught:
        monitor(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # the service runs in the server's process: only the serving port listens
    assert listening_ports(server.process.pid) == {server.port}
