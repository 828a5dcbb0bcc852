"""The recorded requests a promotion gate runs: PredictionLog records from request-log or
warm-up TFRecord files, read with the warm-up tools' reader, decoded as live requests are.

Predict records are compared (their signature and inputs as recorded); other kinds
(classify, regress, multi-inference) are skipped: their examples run through the same
signatures, but their answers are shaped per API.
"""

from __future__ import annotations

import glob
from pathlib import Path

from pyserving.api.commands.warmup_from_logs import _in_time_order, _records
from pyserving.api.envelope import tensor_codec
from pyserving.engine.promotion_gates import GateConfig, RecordedRequest

DEFAULT_SIGNATURE = "serving_default"


def recorded_files(patterns: tuple[str, ...]) -> list[Path]:
    """The files the patterns name (globs expanded), in the request log's time order."""
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) or [pattern]  # a plain name that is absent says so
        found += [Path(p) for p in matches]
    return _in_time_order(found)


def read_requests(files: list[Path], limit: int) -> list[RecordedRequest]:
    """At most `limit` predict requests from `files`, oldest first."""
    requests: list[RecordedRequest] = []
    for record in _records(files):
        if record.WhichOneof("log_type") != "predict_log":
            continue
        request = record.predict_log.request
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        requests.append(RecordedRequest(signature, tensor_codec.decode_inputs(request.inputs)))
        if len(requests) >= limit:
            break
    return requests


def requests_for(config: GateConfig) -> list[RecordedRequest]:
    """What `config`'s shadow comparison runs (read when the gate runs: the logs grow)."""
    return read_requests(recorded_files(config.request_files), config.max_requests)
