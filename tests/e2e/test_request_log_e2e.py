"""Request logging on real servers: every sampled request of every protocol is read back by
TensorFlow's TFRecord reader as the PredictionLog of what was sent and answered; a prefix
that cannot be written, or a full disk (a file-size limit on the server), costs one error
line and counted drops, never a request; and warmup-from-logs turns the files into a
warm-up file that warms a fresh version."""

from __future__ import annotations

import json
import resource
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_log_pb2,
)

from pyserving.adapters.loaders.provenance import saved_model_fingerprint
from pyserving.adapters.request_log.files import prefix_files
from pyserving.api.envelope.request_records import logged_fingerprint
from tests.e2e.conftest import FAST_FLAGS
from tests.example_models import example, export_tf1_model
from tests.util.processes import QUIET_ENV, ServerProcess, free_port, serving
from tests.util.sources import stage_version
from tests.util.workers import both_modes

PredictionLog = prediction_log_pb2.PredictionLog


def model_entry(name: str, base_path: Path, prefix: Path, rate: float = 1.0) -> str:
    return f"""config {{
      name: "{name}" base_path: "{base_path}"
      logging_config {{
        log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}
        sampling_config {{ sampling_rate: {rate} }}
      }}
    }}"""


def records_by_file(prefix: Path) -> dict[Path, list[PredictionLog]]:
    """Every record under `prefix`, by tf.data.TFRecordDataset, oldest file first."""
    return {
        path: [PredictionLog.FromString(raw.numpy()) for raw in tf.data.TFRecordDataset(str(path))]
        for path in prefix_files(str(prefix))
    }


def record_counts(prefix: Path) -> dict[Path, int]:
    """How many records each file under `prefix` holds now (for `read_logs(since=)`)."""
    return {path: len(found) for path, found in records_by_file(prefix).items()}


def read_logs(prefix: Path, since: dict[Path, int] | None = None) -> list[PredictionLog]:
    """Every record under `prefix`, oldest file first; with `since`, only those each file
    gained after it (with --workers each front-end appends to files of its own, so the
    records after a count of all of them are not the new ones)."""
    since = since or {}
    return [
        record
        for path, found in records_by_file(prefix).items()
        for record in found[since.get(path, 0) :]
    ]


def wait_records(
    server: ServerProcess, prefix: Path, n: int, since: dict[Path, int] | None = None
) -> list[PredictionLog]:
    """The records under `prefix` (`since` a `record_counts`), once there are `n`."""
    server.wait_for(lambda: len(read_logs(prefix, since)) >= n, timeout=30, what=f"{n} records")
    return read_logs(prefix, since)


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def metric(port: int, name: str, labels: str) -> float:
    url = f"http://127.0.0.1:{port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        series = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in reply.read().decode().splitlines():
            if line.startswith(series):
                return float(line.split()[-1])
    raise AssertionError(f"no sample {name}{{{labels}}}")


@dataclass
class Logged:
    server: ServerProcess
    rest_port: int
    models: Path
    prefix: Path
    events: Path
    export: Path


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, module_workers: int) -> Iterator[Logged]:
    tmp = tmp_path_factory.mktemp("reqlog")
    export = export_tf1_model(tmp / "export" / "1").parent
    models = tmp / "models"
    stage_version(export, 1, models)
    prefix = tmp / "logs" / "tf1"
    config = tmp / "models.config"
    config.write_text(f"model_config_list {{ {model_entry('tf1', models, prefix)} }}")
    events = tmp / "events.jsonl"
    with serving(
        [f"--model_config_file={config}", f"--event_log={events}", *FAST_FLAGS],
        tmp / "server.log",
        module_workers,
        rest=True,
    ) as server:
        yield Logged(server, server.rest_port, models, prefix, events, export)


def test_every_request_of_every_protocol_is_logged_as_sent_and_answered(logged: Logged) -> None:
    server, stub = logged.server, logged.server.predict_stub
    started = int(time.time())
    before = record_counts(logged.prefix)

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "tf1"
    predict.model_spec.signature_name = "predict_x"
    predict.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([0.5, 3.0], np.float32)))
    predicted = stub.Predict(predict, timeout=30)

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "tf1"
    classify.model_spec.version.value = 1
    classify.input.example_list.examples.extend([example(1.0), example(-1.0)])
    classified, call = stub.Classify.with_call(classify, timeout=30)
    classify_trailers = dict(call.trailing_metadata())

    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x", "tensorflow/serving/classify"),
        ("regress_x", "tensorflow/serving/regress"),
    ):
        task = multi.tasks.add()
        task.model_spec.name = "tf1"
        task.model_spec.signature_name = signature
        task.method_name = method
    multi.input.example_list.examples.extend([example(2.0)])
    inferred = stub.MultiInference(multi, timeout=30)

    rest_predicted = post(
        logged.rest_port,
        "/v1/models/tf1:predict",
        {"signature_name": "predict_x", "instances": [1.0, 2.0, -4.0]},
    )
    rest_regressed = post(
        logged.rest_port,
        "/v1/models/tf1/versions/1:regress",
        {"signature_name": "regress_x", "examples": [{"x": 1.5}, {"x": -0.5}]},
    )
    assert rest_predicted == {"predictions": [2.0, 4.0, -8.0]}
    assert rest_regressed == {"results": [3.0, -1.0]}

    records = wait_records(server, logged.prefix, 5, since=before)
    assert len(records) == 5
    if server.workers:  # files of each front-end's own: across them, not the requests' order

        def sent_order(record: PredictionLog) -> int:
            kind = record.WhichOneof("log_type")
            if kind == "predict_log":
                return 0 if record.predict_log.request == predict else 3
            return {"classify_log": 1, "multi_inference_log": 2}.get(kind, 4)

        records.sort(key=sent_order)
    kinds = [r.WhichOneof("log_type") for r in records]
    grpc_kinds = ["predict_log", "classify_log", "multi_inference_log"]
    assert kinds == [*grpc_kinds, "predict_log", "regress_log"]
    grpc_predict, grpc_classify, grpc_multi, rest_predict, rest_regress = records

    # gRPC: the very messages sent and received.
    assert grpc_predict.predict_log.request == predict
    assert grpc_predict.predict_log.response == predicted
    assert grpc_classify.classify_log.request == classify
    assert grpc_classify.classify_log.response == classified
    assert grpc_multi.multi_inference_log.request == multi
    assert grpc_multi.multi_inference_log.response == inferred

    # REST: the PredictRequest / RegressionRequest that carries what the JSON said, and the
    # reply gRPC would have given for it.
    request = rest_predict.predict_log.request
    assert (request.model_spec.name, request.model_spec.signature_name) == ("tf1", "predict_x")
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["x"]), [1.0, 2.0, -4.0])
    answered = tf.make_ndarray(rest_predict.predict_log.response.outputs["y"])
    np.testing.assert_array_equal(answered, rest_predicted["predictions"])
    regress = rest_regress.regress_log.request
    assert regress.model_spec.version.value == 1  # the URL's version
    xs = [e.features.feature["x"].float_list.value[0] for e in regress.input.example_list.examples]
    assert xs == [1.5, -0.5]
    values = [r.value for r in rest_regress.regress_log.response.result.regressions]
    assert values == rest_regressed["results"]

    # log_metadata: the model, the version that answered, the signature that ran.
    signatures = ["predict_x", "serving_default", "", "predict_x", "regress_x"]
    for record, signature in zip(records, signatures, strict=True):
        metadata = record.log_metadata
        assert (metadata.model_spec.name, metadata.model_spec.version.value) == ("tf1", 1)
        assert metadata.model_spec.signature_name == signature
        assert metadata.sampling_config.sampling_rate == 1.0
        assert started <= metadata.timestamp_secs <= int(time.time())
    # Which bytes answered: a TF1 export has no fingerprint.pb, so pyserving's digest.
    digest = saved_model_fingerprint(str(logged.models / "1"))
    assert digest.startswith("sha256:")
    assert [logged_fingerprint(r) for r in records] == [digest] * 5
    assert classify_trailers == {"x-model-version": "1", "x-model-fingerprint": digest}
    for path in prefix_files(str(logged.prefix)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert metric(logged.rest_port, "pyserving_request_log_records_total", "") >= 5


def test_open_inference_protocol_requests_are_logged_as_predict_logs(logged: Logged) -> None:
    """ModelInfer (gRPC) and /v2 infer (REST) are sampled like every protocol, and logged as
    the PredictRequest that carries them, so TF Serving's tools and warm-up read them."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    before = record_counts(logged.prefix)
    sent = {"grpc": np.array([0.5, -2.0], np.float32), "http": np.array([4.0], np.float32)}
    answers = {}
    clients = {
        "grpc": (triton_grpc, triton_grpc.InferenceServerClient(f"127.0.0.1:{logged.server.port}")),
        "http": (triton_http, triton_http.InferenceServerClient(f"127.0.0.1:{logged.rest_port}")),
    }
    for kind, (module, client) in clients.items():
        tensor = module.InferInput("x", list(sent[kind].shape), "FP32")
        tensor.set_data_from_numpy(sent[kind])
        wanted = [module.InferRequestedOutput("y")]
        result = client.infer(
            "tf1", [tensor], outputs=wanted, parameters={"signature_name": "predict_x"}
        )
        answers[kind] = result.as_numpy("y")
        client.close()
    np.testing.assert_array_equal(answers["grpc"], [1.0, -4.0])

    records = wait_records(logged.server, logged.prefix, 2, since=before)
    if logged.server.workers:  # files of each front-end's own: gRPC's (two xs) first
        records.sort(key=lambda r: -tf.make_ndarray(r.predict_log.request.inputs["x"]).size)
    assert [r.WhichOneof("log_type") for r in records] == ["predict_log", "predict_log"]
    for record, kind in zip(records, ("grpc", "http"), strict=True):
        request, response = record.predict_log.request, record.predict_log.response
        assert (request.model_spec.name, request.model_spec.signature_name) == ("tf1", "predict_x")
        assert list(request.output_filter) == ["y"]
        np.testing.assert_array_equal(tf.make_ndarray(request.inputs["x"]), sent[kind])
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), answers[kind])
        metadata = record.log_metadata.model_spec
        assert (metadata.name, metadata.version.value, metadata.signature_name) == (
            "tf1",
            1,
            "predict_x",
        )


def test_warmup_from_logs_makes_a_file_that_warms_a_fresh_version(
    logged: Logged, tmp_path: Path
) -> None:
    before = len(read_logs(logged.prefix))
    for x in (0.25, 7.0, -1.0):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tf1"
        request.model_spec.signature_name = "predict_x"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], np.float32)))
        logged.server.predict_stub.Predict(request, timeout=30)
    records = wait_records(logged.server, logged.prefix, before + 3)
    wanted = sum(r.log_metadata.model_spec.signature_name == "predict_x" for r in records)

    out = tmp_path / "tf_serving_warmup_requests"
    logs = [str(p) for p in prefix_files(str(logged.prefix))]
    command = [sys.executable, "-m", "pyserving", "warmup-from-logs", *logs, "--out", str(out)]
    made = subprocess.run(  # the command as an operator runs it
        [*command, "--model", "tf1", "--signature", "predict_x"],
        capture_output=True,
        text=True,
        env=QUIET_ENV,
    )
    assert made.returncode == 0, made.stderr
    assert f"wrote {wanted} records of model 'tf1' signature 'predict_x'" in made.stdout
    warmup = [PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(out))]
    assert len(warmup) == wanted >= 3
    assert all(not r.predict_log.HasField("response") for r in warmup)

    staging = logged.models / ".staging-2"  # a fresh version, then renamed into place
    shutil.copytree(logged.export / "1", staging)
    (staging / "assets.extra").mkdir()
    out.rename(staging / "assets.extra" / "tf_serving_warmup_requests")
    staging.rename(logged.models / "2")

    def warmed() -> list[dict]:
        lines = logged.events.read_text().splitlines()
        return [
            e
            for e in map(json.loads, lines)
            if e["kind"] == "warmup_finished" and e["version"] == 2
        ]

    logged.server.wait_for(lambda: warmed(), what="version 2 warmed up")
    [finished] = warmed()
    assert (finished["model"], finished["records"], finished["error"]) == ("tf1", wanted, "")
    assert '"message": "warmup_finished"' in logged.server.log_text()


FILE_SIZE_LIMIT = 1 << 20  # bytes any file of the server may reach: its "disk" is full


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@both_modes
def test_unwritable_prefix_and_full_disk_cost_one_error_line_and_counted_drops(
    tmp_path: Path, workers: int
) -> None:
    export = export_tf1_model(tmp_path / "export" / "1").parent
    models = tmp_path / "models"
    stage_version(export, 1, models)
    blocker = tmp_path / "a-file"
    blocker.write_text("the prefix needs a folder here; even root cannot make one")
    unwritable, full = blocker / "requests", tmp_path / "logs" / "big"
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list { "
        + model_entry("tf1", models, unwritable)
        + model_entry("big", models, full)
        + " }"
    )
    rest_port = free_port()
    server = ServerProcess(
        [f"--model_config_file={config}", f"--rest_api_port={rest_port}", *FAST_FLAGS],
        tmp_path / "server.log",
        preexec_fn=limit_file_size,
        workers=workers,
    )
    try:
        server.wait_serving()
        xs = np.linspace(-1, 1, 300_000).astype(np.float32)  # 1.2 MB: past the limit
        for name in ("tf1", "big") * 5:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = "predict_x"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(xs[:1000] if name == "tf1" else xs))
            reply = server.predict_stub.Predict(request, timeout=30)
            assert len(reply.outputs["y"].float_val) == (1000 if name == "tf1" else xs.size)
        server.wait_for(
            lambda: (
                metric(rest_port, "pyserving_request_log_dropped_total", 'reason="write_error"')
                == 10
            ),
            what="10 drops counted",
        )
        assert metric(rest_port, "pyserving_request_log_dropped_total", 'reason="queue_full"') == 0
        errors = [
            json.loads(line)
            for line in server.log_text().splitlines()
            if "request_log_write_failed" in line
        ]
        assert sorted(e["prefix"] for e in errors) == sorted([str(unwritable), str(full)])
        assert all(e["level"] == "error" for e in errors)
        assert prefix_files(str(full)) == []  # no torn file left behind
    finally:
        assert server.stop() == 0


def test_a_config_reload_changes_the_sampling_on_the_next_request(logged: Logged) -> None:
    """HandleReloadConfigRequest with sampling_rate 0 stops the logging, a new prefix
    starts it again there, and 0.1 logs a binomial share of 400 requests."""

    def reload(prefix: Path, rate: float) -> None:
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(
            f"model_config_list {{ {model_entry('tf1', logged.models, prefix, rate)} }}",
            request.config,
        )
        reply = logged.server.model_stub.HandleReloadConfigRequest(request, timeout=60)
        assert reply.status.error_code == 0, reply.status.error_message

    def predict() -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tf1"
        request.model_spec.signature_name = "predict_x"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        logged.server.predict_stub.Predict(request, timeout=30)

    moved, tenth = logged.prefix.parent / "moved", logged.prefix.parent / "tenth"
    try:
        reload(logged.prefix, 0.0)
        before = len(read_logs(logged.prefix))
        for _ in range(5):
            predict()
        reload(moved, 1.0)
        predict()
        assert len(wait_records(logged.server, moved, 1)) == 1
        assert len(read_logs(logged.prefix)) == before  # nothing while the rate was 0
        reload(tenth, 0.1)
        for _ in range(400):
            predict()
        reload(moved, 1.0)  # its next record is queued after every one of the 400
        predict()
        wait_records(logged.server, moved, 2)
        sampled = len(read_logs(tenth))
        assert abs(sampled - 40) <= 4 * (400 * 0.1 * 0.9) ** 0.5, sampled  # 4 sigma
    finally:
        reload(logged.prefix, 1.0)
