"""Warm-up: recorded requests run on a real SavedModel during its load, or the load fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tensorflow as tf
from prometheus_client import CollectorRegistry
from tensorflow_serving.apis import prediction_log_pb2

from pyserving.adapters.loaders.tensorflow_loader import TensorFlowLoader
from pyserving.adapters.loaders.warmup import WarmingLoader, WarmupError, run_warmup
from pyserving.adapters.loaders.warmup_file import MAX_WARMUP_RECORDS, warmup_path
from pyserving.adapters.metrics import ServingMetrics
from pyserving.api.tfserving.warmup_requests import make_warmup_answer
from pyserving.engine.events import Event, WarmupFinished
from pyserving.engine.request_core import PlanOptions
from tests.example_models import classify_log, export_tf1_model, write_warmup_requests

ANSWER = make_warmup_answer(PlanOptions(method_name_check=True))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tf1_model(tmp_path_factory.mktemp("tf1") / "1")


@pytest.fixture
def version(exported: Path, tmp_path: Path) -> Path:
    """A fresh copy of the exported version, to give its own warm-up file."""
    target = tmp_path / "model" / "3"
    shutil.copytree(exported, target)
    return target


class RecordingLoader:
    """The real TF loader, remembering what it loaded (to check a failed warm-up unloads)."""

    platform = "tensorflow"

    def __init__(self) -> None:
        self.loaded: list = []

    def load(self, path: str):
        servable = TensorFlowLoader().load(path)
        self.loaded.append(servable)
        return servable


def warming(events: list[Event], iterations: int = 1, answer=ANSWER) -> WarmingLoader:
    return WarmingLoader(RecordingLoader(), "m", answer, iterations, events.append)


def test_records_are_answered_each_iteration(version: Path) -> None:
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress_x"
    regress.regress_log.request.input.example_list.examples.extend(
        classify_log().classify_log.request.input.example_list.examples
    )
    predict = prediction_log_pb2.PredictionLog()
    predict.predict_log.request.model_spec.signature_name = "predict_x"
    predict.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], tf.float32))
    write_warmup_requests(version, [classify_log(xs=(1.0, 2.0)), regress, predict])
    calls: list[str] = []

    def counting(servable, record, v) -> None:
        calls.append(record.WhichOneof("log_type"))
        ANSWER(servable, record, v)

    servable = TensorFlowLoader().load(str(version))
    report = run_warmup(servable, str(version), 3, counting, iterations=2)
    assert report is not None and (report.records, report.iterations) == (3, 2)
    assert calls == ["classify_log"] * 2 + ["regress_log"] * 2 + ["predict_log"] * 2


def test_loader_publishes_warmup_before_handing_back(version: Path) -> None:
    write_warmup_requests(version, [classify_log(), classify_log("classify_x")])
    events: list[Event] = []
    servable = warming(events, iterations=3).load(str(version))
    assert "classify_x" in servable.signatures
    [event] = events
    assert isinstance(event, WarmupFinished)
    assert (event.model, event.version, event.records, event.iterations, event.error) == (
        "m",
        3,
        2,
        3,
        "",
    )
    assert event.duration_s > 0


def test_no_warmup_file_means_no_warmup(version: Path) -> None:
    events: list[Event] = []
    warming(events).load(str(version))
    assert events == []


def test_failing_record_fails_the_load_and_names_it(version: Path) -> None:
    write_warmup_requests(version, [classify_log(), classify_log("nope")])
    events: list[Event] = []
    loader = warming(events)
    with pytest.raises(WarmupError) as error:
        loader.load(str(version))
    message = str(error.value)
    assert message.startswith("warm-up record 2 (classify_log) of ")
    assert message.endswith("failed: No signature was found with the name: nope")
    assert warmup_path(str(version)) in message
    [event] = events
    assert isinstance(event, WarmupFinished) and event.error == message
    assert event.records == 1  # the first record ran before the second failed
    # the half-loaded version's resources are dropped
    # ignored below: the recording loader inside the wrapper
    [servable] = loader._inner.loaded  # type: ignore[attr-defined]
    assert servable.signatures and servable.closed


def test_torn_file_is_reported_as_not_tfrecord(version: Path) -> None:
    target = write_warmup_requests(version, [classify_log()])
    target.write_bytes(target.read_bytes()[:-3])
    with pytest.raises(WarmupError, match="Please verify your warmup data is in TFRecord format"):
        warming([]).load(str(version))


def test_record_that_is_no_prediction_log(version: Path) -> None:
    target = write_warmup_requests(version, [])
    with tf.io.TFRecordWriter(str(target)) as writer:
        writer.write(b"\xff\xff\xff not a proto")
    with pytest.raises(WarmupError, match=r"Failed to parse warmup record 1 from .*PredictionLog"):
        warming([]).load(str(version))


def test_unsupported_log_type(version: Path) -> None:
    record = prediction_log_pb2.PredictionLog()
    record.session_run_log.SetInParent()
    write_warmup_requests(version, [record])
    with pytest.raises(WarmupError, match="Unsupported log_type for warmup: session_run_log"):
        warming([]).load(str(version))


def test_more_than_the_maximum_records_fails(version: Path) -> None:
    write_warmup_requests(version, [classify_log()] * (MAX_WARMUP_RECORDS + 1))
    answered: list[int] = []
    with pytest.raises(WarmupError, match=r"exceeds the maximum \(1000\)"):
        warming([], answer=lambda s, r, v: answered.append(v)).load(str(version))
    assert len(answered) == MAX_WARMUP_RECORDS


def test_warmup_metrics_follow_the_events() -> None:
    registry = CollectorRegistry()
    metrics = ServingMetrics(registry, known_models=lambda: {"m"})
    metrics.handle(WarmupFinished(model="m", version=1, records=4, iterations=2, duration_s=0.25))
    metrics.handle(
        WarmupFinished(model="m", version=2, records=0, iterations=1, duration_s=0.1, error="x")
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("pyserving_model_warmup_records_total", model="m") == 4
    assert value("pyserving_model_warmup_seconds_count", model="m", status="ok") == 1
    assert value("pyserving_model_warmup_seconds_sum", model="m", status="ok") == 0.25
    assert value("pyserving_model_warmup_seconds_count", model="m", status="error") == 1
