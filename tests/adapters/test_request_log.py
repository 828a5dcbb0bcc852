"""The request log below the server: TFRecord framing as TensorFlow reads it, the files
(0600, rotation, count bound, torn writes cut back), the writer (bounded queue, one error
line per failing prefix, drops counted), sampling and the model config's logging_config."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import structlog
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from pyserving.adapters.model_config import (
    ConfigError,
    RequestLogConfig,
    diff,
    parse_model_server_config,
)
from pyserving.adapters.request_log.files import RecordFiles, prefix_files
from pyserving.adapters.request_log.logger import RequestLogger
from pyserving.adapters.request_log.tfrecord import TFRecordError, frame, read_records
from pyserving.adapters.request_log.writer import RecordWriter, WriterOptions
from pyserving.api.cli import main

PredictionLog = prediction_log_pb2.PredictionLog
OPTIONS = WriterOptions(max_bytes=1 << 20, max_files=0, queue_size=4096)


def records_in(paths: list[Path]) -> list[PredictionLog]:
    """Every record of the files, read by TensorFlow's own TFRecord reader."""
    found = []
    for path in paths:
        for raw in tf.data.TFRecordDataset(str(path)):
            record = PredictionLog()
            record.ParseFromString(raw.numpy())
            found.append(record)
    return found


def predict_record(n: int, payload: int = 0) -> PredictionLog:
    record = PredictionLog()
    record.predict_log.request.model_spec.name = f"m{n}"
    record.predict_log.request.inputs["x"].string_val.append(b"x" * payload)
    return record


# ------------------------------------------------------------------ framing
def test_frames_are_read_by_tensorflow_and_tensorflow_frames_by_ours(tmp_path: Path) -> None:
    ours = tmp_path / "ours.tfrecord"
    payloads = [b"", b"a", os.urandom(70_000)]
    ours.write_bytes(b"".join(frame(p) for p in payloads))
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == payloads
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for payload in payloads:
            writer.write(payload)
    assert theirs.read_bytes() == ours.read_bytes()  # byte for byte TensorFlow's framing
    with open(theirs, "rb") as stream:
        assert list(read_records(stream)) == payloads


def test_a_corrupted_or_torn_record_is_refused(tmp_path: Path) -> None:
    data = bytearray(frame(b"hello") + frame(b"world"))
    data[-6] ^= 0xFF  # inside the second payload
    path = tmp_path / "bad"
    path.write_bytes(bytes(data))
    with open(path, "rb") as stream, pytest.raises(TFRecordError, match="record 2 has a corr"):
        list(read_records(stream, "bad"))
    path.write_bytes(frame(b"hello")[:-2])
    with open(path, "rb") as stream, pytest.raises(TFRecordError, match="record 1 is truncated"):
        list(read_records(stream, "bad"))


# ------------------------------------------------------------------ files
def test_files_are_0600_named_by_time_and_number_and_rotated_by_size(tmp_path: Path) -> None:
    old = os.umask(0)  # the mode must not depend on a strict umask
    try:
        files = RecordFiles(str(tmp_path / "logs" / "req"), max_bytes=3000, max_files=0)
        for n in range(10):
            files.write(frame(predict_record(n, payload=1000).SerializeToString()))
        files.close()
    finally:
        os.umask(old)
    made = prefix_files(str(tmp_path / "logs" / "req"))
    assert len(made) == 5  # two ~1 KB records per 3000-byte file
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.name.startswith("req-") and path.name.endswith(".tfrecord")
        assert path.stat().st_size <= 3000
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
    names = [r.predict_log.request.model_spec.name for r in records_in(made)]
    assert names == [f"m{n}" for n in range(10)]  # oldest first, nothing lost


def test_only_the_newest_max_files_are_kept(tmp_path: Path) -> None:
    prefix = str(tmp_path / "req")
    (tmp_path / "req-unrelated.txt").write_text("not ours")
    files = RecordFiles(prefix, max_bytes=1, max_files=3)  # one record per file
    for n in range(8):
        files.write(frame(predict_record(n).SerializeToString()))
    files.close()
    kept = prefix_files(prefix)
    assert len(kept) == 3
    assert [r.predict_log.request.model_spec.name for r in records_in(kept)] == ["m5", "m6", "m7"]
    assert (tmp_path / "req-unrelated.txt").exists()


def test_a_second_run_in_the_same_second_gets_new_names(tmp_path: Path) -> None:
    prefix = str(tmp_path / "req")
    for _ in range(2):
        files = RecordFiles(prefix, 1 << 20, 0, clock=lambda: 1_700_000_000.0)
        files.write(frame(b"one"))
        files.close()
    assert [p.name for p in prefix_files(prefix)] == [
        "req-20231114T221320Z-1.tfrecord",
        "req-20231114T221320Z-2.tfrecord",
    ]


# ------------------------------------------------------------------ writer
def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    drops: list[str] = []

    def on_written() -> None:
        entered.set()
        release.wait(10)

    writer = RecordWriter(
        WriterOptions(1 << 20, 0, queue_size=2), on_drop=drops.append, on_written=on_written
    )
    prefix = str(tmp_path / "req")
    writer.submit(prefix, predict_record(0))
    assert entered.wait(10)  # the writer holds record 0; the queue is empty
    for n in range(1, 8):
        writer.submit(prefix, predict_record(n))
    assert drops == ["queue_full"] * 5  # two fit the queue
    release.set()
    writer.close()
    names = [r.predict_log.request.model_spec.name for r in records_in(prefix_files(prefix))]
    assert names == ["m0", "m1", "m2"]


def test_an_unwritable_prefix_logs_one_error_counts_drops_and_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the prefix wants a folder")  # refused even to root
    prefix = str(blocker / "req")
    drops: list[str] = []
    written: list[int] = []
    writer = RecordWriter(OPTIONS, on_drop=drops.append, on_written=lambda: written.append(1))
    with structlog.testing.capture_logs() as logs:
        for n in range(20):
            writer.submit(prefix, predict_record(n))
        writer.close()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1, logs
    assert errors[0]["event"] == "request_log_write_failed" and errors[0]["prefix"] == prefix
    assert "pyserving_request_log_dropped_total" in errors[0]["hint"]
    assert drops == ["write_error"] * 20 and not written

    blocker.unlink()
    blocker.mkdir()  # fixed: the next record is written, and that is said once
    writer = RecordWriter(OPTIONS, on_drop=drops.append, on_written=lambda: written.append(1))
    writer._failing[prefix] = 20  # as the failing writer left it
    with structlog.testing.capture_logs() as logs:
        writer.submit(prefix, predict_record(99))
        writer.close()
    assert [e["event"] for e in logs] == ["request_log_write_recovered"]
    assert logs[0]["dropped"] == 20 and written == [1]


# ------------------------------------------------------------------ sampling
class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def served_config(rate: float, prefix: Path, model: str = "m") -> str:
    return f"""model_config_list {{ config {{
        name: "{model}" base_path: "/models/{model}"
        logging_config {{
          log_collector_config {{ filename_prefix: "{prefix}" }}
          sampling_config {{ sampling_rate: {rate} }}
        }}
    }} }}"""


def test_sampling_at_a_tenth_is_binomial_over_2000_requests(tmp_path: Path) -> None:
    config = parse_model_server_config(served_config(0.1, tmp_path / "req"))
    clock = Clock()
    logger = RequestLogger(lambda: config, RecordWriter(OPTIONS, clock=clock), clock=clock)
    built = []

    def build() -> PredictionLog:
        built.append(1)
        return predict_record(len(built))

    for _ in range(2000):
        logger.log("m", build)
        logger.log("other", build)  # not configured: never built
    logger.close()
    logged = records_in(prefix_files(str(tmp_path / "req")))
    mean, sigma = 2000 * 0.1, (2000 * 0.1 * 0.9) ** 0.5
    assert abs(len(logged) - mean) <= 4 * sigma, len(logged)
    assert len(built) == len(logged)  # only sampled requests are built
    stamps = [r.log_metadata.timestamp_secs for r in logged]
    assert stamps == sorted(stamps) and stamps[0] >= 1_700_000_000  # the fake clock's
    assert stamps[-1] <= int(clock.now) and stamps[-1] > stamps[0]
    for record in logged:
        assert record.log_metadata.sampling_config.sampling_rate == pytest.approx(0.1)


def test_a_config_reload_changes_what_is_logged(tmp_path: Path) -> None:
    configs = [parse_model_server_config(served_config(1.0, tmp_path / "a"))]
    logger = RequestLogger(lambda: configs[0], RecordWriter(OPTIONS))
    logger.log("m", lambda: predict_record(1))
    configs[0] = parse_model_server_config(served_config(1.0, tmp_path / "b"))
    logger.log("m", lambda: predict_record(2))
    configs[0] = parse_model_server_config(served_config(0.0, tmp_path / "c"))
    logger.log("m", lambda: predict_record(3))
    logger.close()
    assert len(records_in(prefix_files(str(tmp_path / "a")))) == 1
    assert len(records_in(prefix_files(str(tmp_path / "b")))) == 1
    assert not prefix_files(str(tmp_path / "c"))


def test_a_builder_that_raises_is_counted_not_raised(tmp_path: Path) -> None:
    config = parse_model_server_config(served_config(1.0, tmp_path / "req"))
    drops: list[str] = []
    logger = RequestLogger(lambda: config, RecordWriter(OPTIONS), on_drop=drops.append)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            logger.log("m", lambda: 1 / 0)
    logger.close()
    assert drops == ["build_error"] * 3
    assert [e["event"] for e in logs] == ["request_log_build_failed"]


# ------------------------------------------------------------------ config
def test_logging_config_is_read_from_the_model_config(tmp_path: Path) -> None:
    [model] = parse_model_server_config(served_config(0.5, tmp_path / "req")).models
    assert model.request_log == RequestLogConfig(0.5, str(tmp_path / "req"))
    [plain] = parse_model_server_config(
        'model_config_list { config { name: "m" base_path: "/m" } }'
    ).models
    assert plain.request_log is None


@pytest.mark.parametrize(
    ("logging_config", "message"),
    [
        ("sampling_config { sampling_rate: 1.5 }", r"sampling_rate 1.5 is outside \[0, 1\]"),
        ("sampling_config { sampling_rate: 0.5 }", "filename_prefix is empty"),
        (
            'log_collector_config { type: "bigquery" filename_prefix: "/x" }',
            "type 'bigquery' is not supported; leave type out or write type: \"tfrecord\"",
        ),
        (
            "sampling_config { sampling_rate: 1 attributes: 1 }",
            "supports only sampling_rate",
        ),
    ],
)
def test_bad_logging_configs_say_what_to_write(logging_config: str, message: str) -> None:
    text = (
        'model_config_list { config { name: "m" base_path: "/m" logging_config { '
        + logging_config
        + " } } }"
    )
    with pytest.raises(ConfigError, match=message):
        parse_model_server_config(text, origin="models.config")


def test_tfrecord_type_is_accepted_and_a_logging_change_is_a_config_change(
    tmp_path: Path,
) -> None:
    typed = served_config(1.0, tmp_path / "req").replace(
        "log_collector_config {", 'log_collector_config { type: "tfrecord"'
    )
    old = parse_model_server_config(typed)
    assert old.models[0].request_log == RequestLogConfig(1.0, str(tmp_path / "req"))
    new = parse_model_server_config(served_config(0.25, tmp_path / "req"))
    changes = diff(old, new)
    assert changes.relogged == ("m",) and not changes.empty and not changes.changed


# ------------------------------------------------------------------ warmup-from-logs
def logged_record(model: str, signature: str, n: int) -> PredictionLog:
    record = predict_record(n)
    record.log_metadata.model_spec.name = model
    record.log_metadata.model_spec.signature_name = signature
    record.predict_log.response.model_spec.name = model
    return record


def write_log(path: Path, records: list[PredictionLog]) -> Path:
    path.write_bytes(b"".join(frame(r.SerializeToString()) for r in records))
    return path


def test_warmup_from_logs_picks_one_model_and_signature_oldest_first(tmp_path: Path) -> None:
    # Shell globs sort -10 before -2; the files are read in the order they were written.
    later = write_log(
        tmp_path / "req-20260101T000000Z-10.tfrecord",
        [logged_record("a", "s", 3), logged_record("b", "s", 4)],
    )
    first = write_log(
        tmp_path / "req-20260101T000000Z-2.tfrecord",
        [logged_record("a", "s", 1), logged_record("a", "t", 9), logged_record("a", "s", 2)],
    )
    out = tmp_path / "warmup"
    assert main(["warmup-from-logs", str(later), str(first), "--out", str(out),
                 "--model", "a", "--signature", "s", "--max", "2"]) == 0  # fmt: skip
    with open(out, "rb") as stream:
        written = [PredictionLog.FromString(d) for d in read_records(stream)]
    assert [r.predict_log.request.model_spec.name for r in written] == ["m1", "m2"]
    assert not any(r.predict_log.HasField("response") for r in written)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "several of model: 'a' (2 records), 'b' (1 records); pick one with --model"),
        (["--model", "a"], "pick one with --signature"),
        (["--model", "c"], "no records of model 'c'; the logs hold"),
        (["--max", "1001"], "--max 1001 is outside 1..1000"),
        (
            ["--model", "b", "--signature", "x"],
            "no records of model 'b' with signature 'x'; the logs hold 's' (1 records)",
        ),
    ],
)
def test_warmup_from_logs_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    log = write_log(
        tmp_path / "req-20260101T000000Z-1.tfrecord",
        [logged_record("a", "s", 1), logged_record("a", "t", 2), logged_record("b", "s", 3)],
    )
    assert main(["warmup-from-logs", str(log), "--out", str(tmp_path / "w"), *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("pyserving warmup-from-logs: error: ") and message in error
    assert not (tmp_path / "w").exists()


def test_warmup_from_logs_refuses_files_that_are_not_request_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("not a TFRecord file at all")
    out = str(tmp_path / "w")
    assert main(["warmup-from-logs", str(junk), "--out", out]) == 2
    assert "is it a request log (TFRecord) file?" in capsys.readouterr().err
    assert main(["warmup-from-logs", str(tmp_path / "missing"), "--out", out]) == 2
    assert "cannot read" in capsys.readouterr().err
