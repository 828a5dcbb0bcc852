"""Model warm-up: run a version's recorded requests while it loads, before it serves.

As TF Serving (saved_model_warmup_util.cc): the requests live in
`<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`tensorflow.serving.PredictionLog` (at most MAX_WARMUP_RECORDS, warmup_file.py); each record
is run `--num_request_iterations_for_warmup` times. A missing file means no warm-up; any
failure fails the load, naming the record, so a version that cannot answer its own
sample requests never becomes available.

`WarmingLoader` wraps any platform's loader, so every platform warms up the same way;
how a record is answered (`AnswerRecord`) is given by the API layer, which owns the requests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from pyserving.adapters.loaders.warmup_file import MAX_WARMUP_RECORDS, warmup_path
from pyserving.engine.events import Event, WarmupFinished
from pyserving.engine.servable import Loader, Servable

# (servable, record, version) → None; raises when the servable cannot answer the record.
AnswerRecord = Callable[[Servable, prediction_log_pb2.PredictionLog, int], None]


class WarmupError(Exception):
    """A warm-up record could not be read or answered; the message names the record."""

    def __init__(self, message: str, completed: int = 0) -> None:
        super().__init__(message)
        self.completed = completed  # records fully run before the failure


@dataclass(frozen=True)
class WarmupReport:
    records: int
    iterations: int
    duration_s: float


def read_warmup_records(path: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The file's PredictionLogs in order; WarmupError for a torn file or a bad record."""
    dataset = iter(tf.data.TFRecordDataset(path))
    index = 0
    while True:
        try:
            raw = next(dataset).numpy()
        except StopIteration:
            return
        except tf.errors.OpError as exc:
            raise WarmupError(
                f"cannot read warm-up record {index + 1} of {path}: {exc.message}. "
                "Please verify your warmup data is in TFRecord format."
            ) from None
        index += 1
        if index > MAX_WARMUP_RECORDS:
            raise WarmupError(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        record = prediction_log_pb2.PredictionLog()
        try:
            record.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError
            raise WarmupError(
                f"Failed to parse warmup record {index} from {path}: not a PredictionLog"
            ) from None
        yield record


def run_warmup(
    servable: Servable, version_path: str, version: int, answer: AnswerRecord, iterations: int
) -> WarmupReport | None:
    """Run every record `iterations` times; None when the version has no warm-up file."""
    path = warmup_path(version_path)
    if not os.path.isfile(path):
        return None
    started = time.monotonic()
    count = completed = 0
    try:
        for count, record in enumerate(read_warmup_records(path), start=1):
            kind = record.WhichOneof("log_type") or "empty"
            for _ in range(max(1, iterations)):
                try:
                    answer(servable, record, version)
                except Exception as exc:
                    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                    raise WarmupError(
                        f"warm-up record {count} ({kind}) of {path} failed: {message}"
                    ) from None
            completed = count
    except WarmupError as exc:
        raise WarmupError(str(exc), completed=completed) from None
    return WarmupReport(count, max(1, iterations), time.monotonic() - started)


def version_of(path: str) -> int:
    name = os.path.basename(os.path.normpath(path))
    return int(name) if name.isdigit() else -1


class WarmingLoader:
    """A platform's loader, plus warm-up of each loaded version before it is handed back."""

    def __init__(
        self,
        inner: Loader,
        model: str,
        answer: AnswerRecord,
        iterations: int,
        publish: Callable[[Event], object],
    ) -> None:
        self.platform = inner.platform
        self._inner = inner
        self._model = model
        self._answer = answer
        self._iterations = max(1, iterations)
        self._publish = publish

    def load(self, path: str) -> Servable:
        servable = self._inner.load(path)
        version = version_of(path)
        started = time.monotonic()
        try:
            report = run_warmup(servable, path, version, self._answer, self._iterations)
        except WarmupError as exc:
            self._publish(
                WarmupFinished(
                    model=self._model,
                    version=version,
                    records=exc.completed,
                    iterations=self._iterations,
                    duration_s=time.monotonic() - started,
                    error=str(exc)[:2000],
                )
            )
            servable.unload()
            raise
        if report is not None:
            self._publish(
                WarmupFinished(
                    model=self._model,
                    version=version,
                    records=report.records,
                    iterations=report.iterations,
                    duration_s=report.duration_s,
                )
            )
        return servable
