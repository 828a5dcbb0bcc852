"""Which requests are logged, and the PredictionLog each becomes: the one interface every
protocol calls.

    request_log.log(model_name, build)

after a request succeeded, where `build()` returns the `PredictionLog` for it: the
request and response in `predict_log`, `classify_log`, `regress_log` or
`multi_inference_log`, and `log_metadata.model_spec` naming the model, the version that
answered and the signature. `build` runs only for a sampled request of a model whose
`logging_config` asks for logging, on the calling thread, and must return a message of
its own (copies, not the live request objects): the writer thread serializes it later.
The logger adds `log_metadata.sampling_config` and `timestamp_secs` and queues it; nothing
here blocks, raises into the request, or costs more than a dict look-up when the model is
not logged.

Sampling is TF Serving's (core/request_logger.cc): each request of the model is logged
with probability `sampling_rate`, independently. The settings follow the config in force
(`configs()`, read per call; a reload takes effect on the next request).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol, TypeAlias

import structlog
from tensorflow_serving.apis import prediction_log_pb2

from pyserving.adapters.model_config import RequestLogConfig, ServerConfig
from pyserving.adapters.request_log.writer import BUILD_ERROR, RecordWriter

log = structlog.get_logger("pyserving.request_log")

PredictionLog: TypeAlias = prediction_log_pb2.PredictionLog
Build = Callable[[], PredictionLog]


class RequestLog(Protocol):
    def log(self, model: str, build: Build) -> None: ...


class NoRequestLog:
    """Logs nothing: for servers (and tests) built without a request log."""

    def log(self, model: str, build: Build) -> None:
        pass


NO_REQUEST_LOG = NoRequestLog()


class RequestLogger:
    def __init__(
        self,
        configs: Callable[[], ServerConfig],
        writer: RecordWriter,
        on_drop: Callable[[str], None] = lambda reason: None,
        uniform: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._configs = configs
        self._writer = writer
        self._on_drop = on_drop
        self._uniform = uniform
        self._clock = clock
        self._seen: ServerConfig | None = None
        self._by_model: dict[str, RequestLogConfig] = {}
        self._build_failed = False

    def log(self, model: str, build: Build) -> None:
        """Log this request of `model` if it is sampled; see the module docstring."""
        config = self._configs()
        if config is not self._seen:
            self._update(config)
        settings = self._by_model.get(model)
        if settings is None or self._uniform() >= settings.sampling_rate:
            return
        try:
            record = build()
        except Exception:  # a bug in a builder must not fail the request it logs
            self._on_drop(BUILD_ERROR)
            if not self._build_failed:
                self._build_failed = True
                log.exception("request_log_build_failed", model=model)
            return
        metadata = record.log_metadata
        metadata.sampling_config.sampling_rate = settings.sampling_rate
        metadata.timestamp_secs = int(self._clock())
        self._writer.submit(settings.filename_prefix, record)

    def close(self, timeout_s: float = 10.0) -> None:
        self._writer.close(timeout_s)

    def _update(self, config: ServerConfig) -> None:
        by_model = {m.name: m.request_log for m in config.models if m.request_log is not None}
        self._by_model, self._seen = by_model, config
        self._writer.retain({c.filename_prefix for c in by_model.values()})
