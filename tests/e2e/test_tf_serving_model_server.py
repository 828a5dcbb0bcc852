"""TF Serving's own integration tests (`tensorflow_model_server_test.py`), as its
`tensorflow_model_server` runs them, against a real pyserving process and on TF Serving's
own test models (built in `tests/tf_serving_testdata.py` as its testdata script builds
them): MultiInference on the TF2 export, TFLite with a fed shape the model's tensor does
not have, TFLite with SignatureDefs, and the profiler under REST traffic with the
default flags.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, inference_pb2, predict_pb2

from tests.e2e.test_rest_e2e import RestServer
from tests.example_models import export_half_plus_two_tf1
from tests.tf_serving_testdata import (
    VERSION,
    export_half_plus_two_tf2_cpu,
    half_plus_two_tflite,
    half_plus_two_tflite_with_sigdef,
    write_version,
)
from tests.util.profiling import trace_under_traffic
from tests.util.workers import both_modes

RPC_TIMEOUT = 5.0  # the tests' own


def run_server(tmp: Path, model_path: Path, *flags: str, workers: int = 0) -> RestServer:
    """RunServer('default', model_path, ...): --model_name=default, the REST port on."""
    server = RestServer(
        ["--model_name=default", f"--model_base_path={model_path}", *flags],
        tmp / "server.log",
        workers=workers,
    )
    server.wait_serving(timeout=120)
    return server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[RestServer]]:
    started: list[RestServer] = []
    yield started
    for server in started:
        server.stop()


def verify_predict_request(server: RestServer, expected_output: float) -> None:
    """VerifyPredictRequest(specify_output=False): x = [2.0] of shape [1]."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    result = server.predict_stub.Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    assert result.model_spec.name == "default"
    assert result.model_spec.signature_name == "serving_default"
    assert result.model_spec.version.value == VERSION


def graph_runs(server: RestServer) -> float:
    with urllib.request.urlopen(server.url("/monitoring/prometheus/metrics"), timeout=10) as r:
        text = r.read().decode()
    match = re.search(r"^:tensorflow:core:graph_runs\{\} (\S+)$", text, re.MULTILINE)
    assert "# TYPE :tensorflow:core:graph_runs counter" in text
    return float(match.group(1)) if match else 0.0  # exported once it counted one


# ------------------------------------------------------------ MultiInference on TF2
@both_modes
def test_multi_inference_tf2(tmp_path: Path, servers: list[RestServer], workers: int) -> None:
    """testMultiInferenceTf2: regress_x_to_y and classify_x_to_y of the TF2 export, whose
    signatures each have an input tensor of their own, in one request and one run."""
    model_path = tmp_path / "saved_model_half_plus_two_tf2_cpu"
    export_half_plus_two_tf2_cpu(model_path)
    server = run_server(tmp_path, model_path, workers=workers)
    servers.append(server)

    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "default"
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = "default"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])

    before = graph_runs(server)
    result = server.predict_stub.MultiInference(request, RPC_TIMEOUT)
    assert graph_runs(server) - before == 1  # one Session run for both tasks

    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        spec = result.results[i].model_spec
        assert spec.name == "default"
        assert spec.signature_name == request.tasks[i].model_spec.signature_name
        assert spec.version.value == VERSION

    # regress_x_to_y2 (0.5x + 3) beside them: each task gets its own signature's outputs
    three = inference_pb2.MultiInferenceRequest()
    three.CopyFrom(request)
    task = three.tasks.add()
    task.model_spec.name = "default"
    task.model_spec.signature_name = "regress_x_to_y2"
    task.method_name = "tensorflow/serving/regress"
    three.input.example_list.examples.add().features.feature["x"].float_list.value.append(4.0)
    result = server.predict_stub.MultiInference(three, RPC_TIMEOUT)
    assert [r.value for r in result.results[0].regression_result.regressions] == [3.0, 4.0]
    assert [
        c.classes[0].score for c in result.results[1].classification_result.classifications
    ] == [3.0, 4.0]
    assert [r.value for r in result.results[2].regression_result.regressions] == [4.0, 5.0]


# ------------------------------------------------------------------------- TFLite
@both_modes
def test_predict_on_tflite(tmp_path: Path, servers: list[RestServer], workers: int) -> None:
    """testPredictOnTfLite: x fed as [1] to a model whose input tensor is [1,1]; TF
    Serving's TfLiteSession resizes the input (ResizeInputTensor) and answers y = [3.0]."""
    model_path = tmp_path / "saved_model_half_plus_two_tflite"
    write_version(model_path, half_plus_two_tflite())
    server = run_server(tmp_path, model_path, "--prefer_tflite_model=true", workers=workers)
    servers.append(server)
    verify_predict_request(server, expected_output=3.0)
    # and a batch of three rows, [3,1], resized to and back
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0], [4.0], [6.0]], tf.float32))
    reply = server.predict_stub.Predict(request, RPC_TIMEOUT)
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [[3.0], [4.0], [5.0]]
    # what the interpreter cannot take still fails, as a request error
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0], tf.float64))
    with pytest.raises(grpc.RpcError) as error:
        server.predict_stub.Predict(request, RPC_TIMEOUT)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_predict_with_signature_def_on_tflite(tmp_path: Path, servers: list[RestServer]) -> None:
    """testPredictWithSignatureDefOnTfLite: the model's SignatureDef (in its
    signature_defs_metadata) names the input `x` and the tensor `tflite_input`: clients
    feed `x`, and GetModelMetadata shows the SignatureDef with the TF Lite tensor names."""
    model_path = tmp_path / "saved_model_half_plus_two_tflite_with_sigdef"
    write_version(model_path, half_plus_two_tflite_with_sigdef())
    server = run_server(tmp_path, model_path, "--prefer_tflite_model=true")
    servers.append(server)
    verify_predict_request(server, expected_output=3.0)

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    reply = server.predict_stub.GetModelMetadata(request, RPC_TIMEOUT)
    defs = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(defs)
    signature = defs.signature_def["serving_default"]
    assert list(signature.inputs) == ["x"] and list(signature.outputs) == ["y"]
    assert signature.inputs["x"].name == "tflite_input"  # FixTfLiteTensorName: ':0' dropped
    assert signature.outputs["y"].name == "y"
    assert signature.method_name == "tensorflow/serving/predict"


# ----------------------------------------------------------------------- profiler
def test_profiler_service_with_valid_trace_request(
    tmp_path: Path, servers: list[RestServer]
) -> None:
    """test_profiler_service_with_valid_trace_request, with the default flags (TF Serving
    serves the profiler unless --enable_profiler=false): REST predicts run while
    tf.profiler.experimental.client.trace captures 1000 ms; it writes a trace of them."""
    model_path = tmp_path / "saved_model_half_plus_two_cpu"
    export_half_plus_two_tf1(model_path / f"{VERSION:08d}")
    server = run_server(tmp_path, model_path)
    servers.append(server)

    def predict() -> tuple[int, dict] | None:  # the test's wget loop: a REST predict
        answer = server.call("/v1/models/default:predict", b'{"instances": [2.0, 3.0, 4.0]}')
        return None if answer == (200, {"predictions": [3.0, 3.5, 4.0]}) else answer

    logdir = tmp_path / "logs"
    logdir.mkdir()
    assert trace_under_traffic(server, predict, logdir, 1000, attempts=10, pause_s=0.1) == []
    (trace,) = logdir.rglob("*.xplane.pb")
    assert trace.name == f"127.0.0.1_{server.port}.xplane.pb"  # host_name as the client gave
    assert b"y:AddV2" in trace.read_bytes()  # the served graph's ops: the predicts ran


# ----------------------------------------------------------------------- ALTS
def test_use_alts_credentials_off_google_cloud_stops_start_up(tmp_path: Path) -> None:
    """--use_alts_credentials: gRPC's ALTS server credentials; gRPC makes them only on
    Google Cloud (grpc_alts_is_running_on_gcp), so here, as tensorflow_model_server does,
    the port cannot be added and start-up stops, saying why."""
    server = RestServer(
        [f"--model_base_path={tmp_path}", "--model_name=m", "--use_alts_credentials"],
        tmp_path / "server.log",
    )
    assert server.process.wait(timeout=120) == 2
    assert "gRPC makes ALTS server credentials only on Google Cloud" in server.log_text()


def test_alts_and_an_ssl_config_together_stop_start_up(tmp_path: Path) -> None:
    ssl = tmp_path / "ssl.pbtxt"
    ssl.write_text('server_key: "k" server_cert: "c"')
    server = RestServer(
        [f"--model_base_path={tmp_path}", "--use_alts_credentials", f"--ssl_config_file={ssl}"],
        tmp_path / "server.log",
    )
    assert server.process.wait(timeout=120) == 2
    expected = "Either use_alts_credentials must be false or ssl_config_file must be empty."
    assert expected in server.log_text()
