"""TF Serving's Session flags against real server processes: --tensorflow_session_config_file
and --per_process_gpu_memory_fraction reach every Session's ConfigProto (an
operation_timeout_in_ms in the file ends a blocked run with TensorFlow's
DEADLINE_EXCEEDED, on the wire), --xla_cpu_compilation_enabled allows a jit_compile
model that otherwise fails with "XLA compilation disabled", and --platform_config_file's
SessionBundleConfig takes the place of those flags (its batching_parameters batch
without --enable_batching)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.e2e.conftest import FAST_FLAGS
from tests.example_models import export_half_plus_two_tf1
from tests.util.processes import ServerProcess


def export_blocking_model(path: Path) -> Path:
    """predict: y = x + a value dequeued from an empty FIFOQueue, so every run blocks until
    the Session's operation_timeout_in_ms (none by default) ends it."""
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [None], name="x")
        queue = tf.queue.FIFOQueue(1, [tf.float32], shapes=[[]])
        y = tf.add(x, queue.dequeue(), name="y")
        sigs = v1.saved_model
        builder = sigs.Builder(str(path))
        builder.add_meta_graph_and_variables(
            session, ["serve"], {"serving_default": sigs.predict_signature_def({"x": x}, {"y": y})}
        )
        builder.save()
    return path


def export_jit_model(path: Path) -> Path:
    """y = 2x in a function that must be compiled by XLA (jit_compile=True)."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], jit_compile=True)
    def predict(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 2.0 * x}

    module.predict = predict
    tf.saved_model.save(module, str(path), signatures={"serving_default": predict})
    return path


def serve(tmp_path: Path, start_server, model: Path, *flags: str) -> ServerProcess:
    server = start_server(
        "--model_name=m", f"--model_base_path={model.parent}", *FAST_FLAGS, *flags
    )
    server.wait_serving(timeout=120)
    return server


def predict(server: ServerProcess, x: list[float], timeout: float = 30) -> np.ndarray:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    return tf.make_ndarray(server.predict_stub.Predict(request, timeout=timeout).outputs["y"])


def logged_session_config(server: ServerProcess) -> dict:
    for line in server.log_text().splitlines():
        if '"tensorflow_session_config"' in line:
            return json.loads(line)
    raise AssertionError(server.log_text()[-3000:])


def test_session_config_file_reaches_every_session(tmp_path: Path, start_server) -> None:
    model = export_blocking_model(tmp_path / "models" / "1")
    config = tmp_path / "session.pbtxt"
    config.write_text("operation_timeout_in_ms: 400\nintra_op_parallelism_threads: 7\n")
    server = serve(
        tmp_path,
        start_server,
        model,
        f"--tensorflow_session_config_file={config}",
        "--per_process_gpu_memory_fraction=0.25",
        "--tensorflow_inter_op_parallelism=3",
    )
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, [1.0], timeout=20)  # the queue stays empty: the timeout ends it
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "Timed out waiting for notification" in caught.value.details()
    logged = logged_session_config(server)
    assert logged["source"] == "flags"
    # server.cc: the file, then the GPU fraction, then both thread counts from the flags
    # (the file's intra-op 7 is replaced by the flags' 0)
    assert logged["session_config"] == (
        "inter_op_parallelism_threads: 3 gpu_options { per_process_gpu_memory_fraction: 0.25 } "
        "operation_timeout_in_ms: 400"
    )


def test_a_bad_session_config_file_stops_start_up(tmp_path: Path, start_server) -> None:
    model = export_blocking_model(tmp_path / "models" / "1")
    config = tmp_path / "session.pbtxt"
    config.write_text("operation_timeout_ms: 400\n")  # misspelt
    server = start_server(
        "--model_name=m",
        f"--model_base_path={model.parent}",
        f"--tensorflow_session_config_file={config}",
    )
    assert server.process.wait(timeout=120) == 2
    assert "is not a tensorflow.ConfigProto text proto" in server.log_text()
    assert "operation_timeout_ms" in server.log_text()


def test_xla_compilation_is_off_unless_a_flag_allows_it(tmp_path: Path, start_server) -> None:
    model = export_jit_model(tmp_path / "models" / "1")
    off = serve(tmp_path, start_server, model)
    with pytest.raises(grpc.RpcError) as caught:
        predict(off, [1.0, 2.0])
    assert "XLA compilation disabled" in caught.value.details()
    assert logged_session_config(off)["xla_compilation"] == "disabled"
    on = serve(tmp_path, start_server, model, "--xla_cpu_compilation_enabled=true")
    np.testing.assert_allclose(predict(on, [1.0, 2.0]), [2.0, 4.0])
    assert logged_session_config(on)["xla_compilation"] == "allowed"


PLATFORM_CONFIG = """
platform_configs {
  key: "tensorflow"
  value {
    source_adapter_config {
      [type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] {
        legacy_config {
          session_config { operation_timeout_in_ms: 300 }
          batching_parameters { max_batch_size { value: 2 } batch_timeout_micros { value: 0 } }
          saved_model_tags: "serve"
        }
      }
    }
  }
}
"""


def test_platform_config_file_takes_the_place_of_the_flags(tmp_path: Path, start_server) -> None:
    model = export_blocking_model(tmp_path / "models" / "1")
    config = tmp_path / "platform.pbtxt"
    config.write_text(PLATFORM_CONFIG)
    server = serve(
        tmp_path,
        start_server,
        model,
        f"--platform_config_file={config}",
        "--tensorflow_intra_op_parallelism=5",  # ignored: the file's session_config rules
    )
    logged = logged_session_config(server)
    assert logged["source"] == f"--platform_config_file={config}"
    assert logged["session_config"] == "operation_timeout_in_ms: 300"
    # batching_parameters batch without --enable_batching: three rows exceed its size 2
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, [1.0, 2.0, 3.0])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 3 is larger than maximum input batch size 2" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, [1.0])  # batched, and the session config's timeout ends the run
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_platform_config_fields_pyserving_does_not_apply_stop_start_up(
    tmp_path: Path, start_server
) -> None:
    model = export_blocking_model(tmp_path / "models" / "1")
    config = tmp_path / "platform.pbtxt"
    config.write_text(
        PLATFORM_CONFIG.replace('saved_model_tags: "serve"', "enable_session_metadata: true")
    )
    server = start_server(
        "--model_name=m", f"--model_base_path={model.parent}", f"--platform_config_file={config}"
    )
    assert server.process.wait(timeout=120) == 2
    assert (
        "SessionBundleConfig field(s) ['enable_session_metadata'] are not supported"
        in server.log_text()
    )


def test_per_model_batching_parameters(tmp_path: Path, start_server) -> None:
    """A version's batching_params.pbtxt batches it by its own parameters; a version without
    one is not batched; without the flag the file is ignored."""
    own = export_half_plus_two_tf1(tmp_path / "own" / "1")
    (own / "batching_params.pbtxt").write_text("max_batch_size { value: 2 }")
    export_half_plus_two_tf1(tmp_path / "plain" / "1")
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "own" base_path: "{tmp_path / "own"}" }}\n'
        f'  config {{ name: "plain" base_path: "{tmp_path / "plain"}" }}\n'
        "}\n"
    )
    common = tmp_path / "batching.pbtxt"
    common.write_text("max_batch_size { value: 100 } batch_timeout_micros { value: 0 }")

    def answer(server: ServerProcess, model: str, rows: int) -> np.ndarray:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
        return tf.make_ndarray(server.predict_stub.Predict(request, timeout=30).outputs["y"])

    flags = (f"--model_config_file={config}", *FAST_FLAGS, "--enable_batching")
    per_model = start_server(
        *flags, f"--batching_parameters_file={common}", "--enable_per_model_batching_parameters"
    )
    per_model.wait_serving(timeout=120)
    with pytest.raises(grpc.RpcError) as caught:
        answer(per_model, "own", 3)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 3 is larger than maximum input batch size 2" in caught.value.details()
    np.testing.assert_allclose(answer(per_model, "own", 2), [[2.0], [2.5]])
    np.testing.assert_allclose(answer(per_model, "plain", 3), [[2.0], [2.5], [3.0]])
    # not batched at all: a request larger than the server-wide max_batch_size runs whole
    assert answer(per_model, "plain", 150).shape == (150, 1)

    server_wide = start_server(*flags, f"--batching_parameters_file={common}")
    server_wide.wait_serving(timeout=120)
    np.testing.assert_allclose(answer(server_wide, "own", 3), [[2.0], [2.5], [3.0]])
    with pytest.raises(grpc.RpcError) as caught:
        answer(server_wide, "plain", 150)
    assert "Task size 150 is larger than maximum input batch size 100" in caught.value.details()


def test_a_bad_batching_params_file_fails_that_versions_load(tmp_path: Path, start_server) -> None:
    version = export_half_plus_two_tf1(tmp_path / "m" / "1")
    (version / "batching_params.pbtxt").write_text("max_batch_size: 2")  # not a wrapper
    server = start_server(
        "--model_name=m",
        f"--model_base_path={tmp_path / 'm'}",
        *FAST_FLAGS,
        "--enable_batching",
        "--enable_per_model_batching_parameters",
    )
    server.wait_for(lambda: "is not a BatchingParameters text proto" in server.log_text())
    assert "batching_params.pbtxt" in server.log_text()


def test_predict_outputs_in_tensor_content(tmp_path: Path, start_server) -> None:
    """--enable_serialization_as_tensor_content: AsProtoTensorContent, not float_val."""
    model = export_half_plus_two_tf1(tmp_path / "models" / "1")
    typed = serve(tmp_path, start_server, model)
    content = serve(tmp_path, start_server, model, "--enable_serialization_as_tensor_content")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0], [4.0]], tf.float32))
    y = typed.predict_stub.Predict(request, timeout=30).outputs["y"]
    assert list(y.float_val) == [3.0, 4.0] and not y.tensor_content
    y = content.predict_stub.Predict(request, timeout=30).outputs["y"]
    assert not y.float_val
    assert y.tensor_content == np.array([3.0, 4.0], "<f4").tobytes()
    assert tf.make_ndarray(y).tolist() == [[3.0], [4.0]]
