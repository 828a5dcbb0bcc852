"""`pyserving warmup-from-logs LOGS... --out FILE`: a warm-up file from logged traffic.

The request log's files (`logging_config`) hold PredictionLog records in TFRecord
framing, which is exactly what `assets.extra/tf_serving_warmup_requests` holds, so a
version can be warmed with the requests it will really get. This picks the records of
one model and signature (the one the logs hold, or --model/--signature), at most --max
(TF Serving reads at most MAX_WARMUP_RECORDS, 1000), oldest first, and drops their
responses (warm-up sends only requests). The command line is `warmup_from_logs_command`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from pyserving.adapters.loaders.warmup_file import MAX_WARMUP_RECORDS
from pyserving.adapters.request_log.files import FILE_MODE
from pyserving.adapters.request_log.tfrecord import TFRecordError, frame, read_records

_LOG_NAME = re.compile(r".*-(\d{8}T\d{6}Z)-(\d+)\.tfrecord")

PredictionLog: TypeAlias = prediction_log_pb2.PredictionLog


class WarmupFromLogsError(Exception):
    """The command cannot run as asked; the message says what to change."""


def record_model(record: PredictionLog) -> str:
    if record.log_metadata.model_spec.name:
        return record.log_metadata.model_spec.name
    request = _request(record)
    if record.WhichOneof("log_type") == "multi_inference_log":
        tasks = request.tasks
        return tasks[0].model_spec.name if tasks else ""
    return request.model_spec.name if request is not None else ""


def record_signature(record: PredictionLog) -> str:
    """The signature that ran (the reply's, logged in log_metadata); a multi-inference
    record's is its tasks' signatures joined by commas."""
    request = _request(record)
    if record.WhichOneof("log_type") == "multi_inference_log":
        return ",".join(t.model_spec.signature_name for t in request.tasks)
    if record.log_metadata.model_spec.signature_name:
        return record.log_metadata.model_spec.signature_name
    return request.model_spec.signature_name if request is not None else ""


def make_warmup_file(
    logs: list[Path],
    out: Path,
    limit: int,
    model: str | None = None,
    signature: str | None = None,
) -> tuple[int, str, str]:
    """Write the warm-up file; (records written, model, signature)."""
    if not 1 <= limit <= MAX_WARMUP_RECORDS:
        raise WarmupFromLogsError(
            f"--max {limit} is outside 1..{MAX_WARMUP_RECORDS} (TF Serving runs at most "
            f"{MAX_WARMUP_RECORDS} warm-up records)"
        )
    records = list(_records(_in_time_order(logs)))
    if not records:
        raise WarmupFromLogsError("the logs hold no records; give request log files")
    model = _pick("model", "--model", model, Counter(record_model(r) for r in records))
    ours = [r for r in records if record_model(r) == model]
    signature = _pick(
        f"model {model!r} with signature",
        "--signature",
        signature,
        Counter(record_signature(r) for r in ours),
    )
    chosen = [r for r in ours if record_signature(r) == signature][:limit]
    _write(out, chosen)
    return len(chosen), model, signature


def _pick(what: str, flag: str, wanted: str | None, counts: Counter[str]) -> str:
    """The one value of `counts` the records hold, or `wanted`; `what` names its kind."""
    listing = ", ".join(f"{name!r} ({n} records)" for name, n in counts.most_common())
    if wanted is not None:
        if wanted not in counts:
            raise WarmupFromLogsError(f"no records of {what} {wanted!r}; the logs hold {listing}")
        return wanted
    if len(counts) > 1:
        raise WarmupFromLogsError(
            f"the logs hold several of {what}: {listing}; pick one with {flag}"
        )
    return next(iter(counts))


def _in_time_order(logs: list[Path]) -> list[Path]:
    """Request log files by the time and number in their names (a shell glob would put
    -10 before -2); other names keep the order given, after them."""
    named = [(m[1], int(m[2]), p) for p in logs if (m := _LOG_NAME.fullmatch(p.name))]
    others = [p for p in logs if not _LOG_NAME.fullmatch(p.name)]
    return [p for _, _, p in sorted(named)] + others


def _records(paths: list[Path]) -> Iterator[PredictionLog]:
    for path in paths:
        try:
            with open(path, "rb") as stream:
                for index, data in enumerate(read_records(stream, str(path)), start=1):
                    record = PredictionLog()
                    try:
                        record.ParseFromString(data)
                    except DecodeError:
                        raise WarmupFromLogsError(
                            f"{path}: record {index} is not a PredictionLog; give request log files"
                        ) from None
                    if record.WhichOneof("log_type") is not None:
                        yield record
        except OSError as exc:
            raise WarmupFromLogsError(f"cannot read {path}: {exc.strerror}") from None
        except TFRecordError as exc:
            raise WarmupFromLogsError(f"{exc}; is it a request log (TFRecord) file?") from None


def _write(out: Path, records: list[PredictionLog]) -> None:
    """Written next to `out` and renamed over it, so a reader never sees half a file;
    0600, as the request log (it holds request payloads)."""
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as stream:
            for record in records:
                copy = PredictionLog()
                copy.CopyFrom(record)
                kind = copy.WhichOneof("log_type")
                getattr(copy, kind).ClearField("response")
                stream.write(frame(copy.SerializeToString()))
        os.replace(temporary, out)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise WarmupFromLogsError(f"cannot write --out {out}: {exc.strerror}") from None


def _request(record: PredictionLog) -> Any:
    """The logged request: a Predict, Classify, Regress or MultiInference request (Any:
    tensorflow_serving's generated modules carry no types), or None."""
    kind = record.WhichOneof("log_type")
    return getattr(record, kind).request if kind else None
