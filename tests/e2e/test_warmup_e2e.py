"""Warm-up on a real server: the trainer's warm-up file is run before the version
serves (seen in the event log and the server log), and a broken one fails only its own
version while the serving version keeps answering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, prediction_log_pb2

from tests.e2e.conftest import EXAMPLES, FAST_FLAGS, error_rate
from tests.example_models import write_warmup_requests
from tests.util.processes import ServerProcess, run_python

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus
WARMUP_RECORDS = 5


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 exported by the example trainer with --warmup_requests."""
    target = tmp_path_factory.mktemp("warm")
    result = run_python(
        str(EXAMPLES / "mnist_saved_model.py"),
        "--training_iteration=200",
        f"--warmup_requests={WARMUP_RECORDS}",
        str(target),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (target / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    return target


def copy_version(export_dir: Path, into: Path, version: int) -> Path:
    staging = into / f".staging-{version}"
    shutil.copytree(export_dir / "1", staging)
    return staging.rename(into / str(version))


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def status(server: ServerProcess, version: int) -> ModelVersionStatus:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "mnist"
    request.model_spec.version.value = version
    [reply] = server.model_stub.GetModelStatus(request, timeout=10).model_version_status
    return reply


def test_warmup_runs_before_the_version_serves(
    export_dir: Path, tmp_path: Path, start_server, trained_models
) -> None:
    copy_version(export_dir, tmp_path / "models", 1)
    log = tmp_path / "events.jsonl"
    server = start_server(
        "--model_name=mnist",
        f"--model_base_path={tmp_path / 'models'}",
        f"--event_log={log}",
        "--num_request_iterations_for_warmup=2",
        *FAST_FLAGS,
    )
    server.wait_serving()
    assert error_rate(server, trained_models.dataset) < 0.5
    recorded = events(log)
    [warmup] = [e for e in recorded if e["kind"] == "warmup_finished"]
    assert (warmup["model"], warmup["version"], warmup["records"]) == ("mnist", 1, WARMUP_RECORDS)
    assert warmup["iterations"] == 2 and warmup["error"] == "" and warmup["duration_s"] > 0
    [available] = [e for e in recorded if e["kind"] == "transition" and e["dst"] == "available"]
    assert warmup["seq"] < available["seq"]  # run during loading, before serving
    assert '"message": "warmup_finished"' in server.log_text()


def broken_warmup(version_path: Path) -> None:
    """Record 1 is fine, record 2 asks for a signature the model lacks."""
    good = prediction_log_pb2.PredictionLog()
    request = good.predict_log.request
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([[0.0] * 64], tf.float32))
    bad = prediction_log_pb2.PredictionLog()
    bad.CopyFrom(good)
    bad.predict_log.request.model_spec.signature_name = "classify_images"
    write_warmup_requests(version_path, [good, bad])


def test_broken_warmup_fails_its_version_and_the_old_one_keeps_serving(
    export_dir: Path, tmp_path: Path, start_server, trained_models
) -> None:
    models = tmp_path / "models"
    copy_version(export_dir, models, 1)
    server = start_server("--model_name=mnist", f"--model_base_path={models}", *FAST_FLAGS)
    server.wait_serving()
    staging = models / ".staging-2"
    shutil.copytree(export_dir / "1", staging)
    broken_warmup(staging)
    staging.rename(models / "2")
    server.wait_for(
        lambda: server.version_states("mnist").get(2) == ModelVersionStatus.END, what="v2 failed"
    )
    message = status(server, 2).status.error_message
    assert "warm-up record 2 (predict_log) of " in message
    assert "classify_images" in message and "tf_serving_warmup_requests" in message
    assert status(server, 1).state == ModelVersionStatus.AVAILABLE
    assert error_rate(server, trained_models.dataset) < 0.5


def test_warmup_can_be_turned_off(export_dir: Path, tmp_path: Path, start_server) -> None:
    version = copy_version(export_dir, tmp_path / "models", 1)
    broken_warmup(version)
    log = tmp_path / "events.jsonl"
    server = start_server(
        "--model_name=mnist",
        f"--model_base_path={tmp_path / 'models'}",
        "--enable_model_warmup=false",
        f"--event_log={log}",
        *FAST_FLAGS,
    )
    server.wait_serving()
    assert status(server, 1).state == ModelVersionStatus.AVAILABLE
    assert not [e for e in events(log) if e["kind"] == "warmup_finished"]
