"""TF Serving's own metric series, beside pyserving's, so its dashboards and alerts work.

Names, labels, units (microseconds) and buckets are TF Serving's, from its source:
servables/tensorflow/util.cc (request_count, request_latency, runtime_latency,
batching/batching_session.cc and batching_util.h (the
batching_session family), servables/tensorflow/saved_model_warmup_util.cc (warm-up),
tensorflow/cc/saved_model/loader.cc (load_*) and tensorflow/core/common_runtime
metrics (graph_*). They are rendered as TF Serving's PrometheusExporter renders them
(util/prometheus_exporter.cc): every character of the name outside `[a-zA-Z0-9_]`
becomes `:`, counters keep their name (no `_total` added), histograms list their
`le` limits as absl prints a double (six significant digits) ending with `+Inf`, and
only `# TYPE` lines are written.

Where TF Serving records a value, this records it, and nowhere else: request_count for
every finished gRPC Predict/Classify/Regress and every REST request; request_latency
only when the answer is OK; runtime_latency around the model call of a Predict, Classify
or Regress (it includes the batching queue, as TF Serving's Session::Run on a batching
session does); queuing_latency per request in each batch. Differences that remain:
- `model_name` is pyserving's bounded model label (a name that is not configured is
  counted as `_unknown_`; TF Serving uses whatever the client sent).
- request_latency has no `status` label: TF Serving added one in 2021 and reverted it
  the same week (commits 0483edb6 and 67228ab9); releases since have none.
- Histogram buckets count `value <= limit` (Prometheus's `le`); TF counts `value < limit`.
- request_example_counts / request_example_count_total (MultiInference only, in TF
  Serving since 2021) are not exported.
- graph_* are counted around the Session calls pyserving makes (callables and the load's
  restore and init runs); TensorFlow's own C++ counters cannot be read from Python.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pyserving.engine.events import (
    AspiredVersions,
    BatchRun,
    Event,
    WarmupFinished,
)
from pyserving.engine.request_scope import CURRENT
from pyserving.engine.servable_id import ServableId
from pyserving.engine.servable_map import ServableHandle

UNKNOWN_MODEL = "_unknown_"
METRICS_NAMES = ("pyserving", "tfserving", "both")
# TF Serving's thread_pool_name when no --batching_parameters_file is given (server.cc).
DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TensorFlow's monitoring::Buckets::Exponential: scale * growth^i for i < count."""
    limits, bound = [], float(scale)
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # util.cc: ~20 minutes in µs
QUEUING_BUCKETS = exponential_buckets(100, 1.2, 52)  # batching_session.cc: ~1 second
BATCH_SIZE_BUCKETS = exponential_buckets(1, 2, 14)  # batching_util.h


def prometheus_name(name: str) -> str:
    """TF Serving's GetPrometheusMetricName: `/tensorflow/serving/x` -> `:tensorflow:serving:x`."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else ":" for c in name)
    return "_" + out if out[:1].isdigit() else out


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    return ",".join(f'{n}="{_label_value(v)}"' for n, v in zip(names, values, strict=True))


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1 << 53:
        return str(int(value))
    return repr(float(value))


class _Family:
    """One metric: its cells by label values, guarded by one lock (writers are several
    threads: the event loop, batch threads, load threads)."""

    def __init__(self, name: str, labels: Sequence[str]) -> None:
        self.name = prometheus_name(name)
        self.labels = tuple(labels)
        self._lock = threading.Lock()
        self._cells: dict[tuple[str, ...], Any] = {}


class Counter(_Family):
    def inc(self, values: tuple[str, ...], amount: float = 1) -> None:
        with self._lock:
            self._cells[values] = self._cells.get(values, 0) + amount

    def render(self) -> list[str]:
        lines = [f"# TYPE {self.name} counter"]
        with self._lock:
            cells = sorted(self._cells.items())
        for values, value in cells:
            lines.append(f"{self.name}{{{_labels(self.labels, values)}}} {_number(value)}")
        return lines


class Histogram(_Family):
    """TF's Sampler: bucket counts, sum and count per cell."""

    def __init__(self, name: str, labels: Sequence[str], limits: tuple[float, ...]) -> None:
        super().__init__(name, labels)
        self.limits = limits
        self._le = [f"{limit:.6g}" for limit in limits] + ["+Inf"]

    def observe(self, values: tuple[str, ...], value: float) -> None:
        index = bisect.bisect_left(self.limits, value)
        with self._lock:
            cell = self._cells.get(values)
            if cell is None:
                cell = self._cells[values] = [[0] * (len(self.limits) + 1), 0.0]
            cell[0][index] += 1
            cell[1] += value

    def render(self) -> list[str]:
        lines = [f"# TYPE {self.name} histogram"]
        with self._lock:
            cells = sorted((k, (list(c[0]), c[1])) for k, c in self._cells.items())
        for values, (buckets, total) in cells:
            labels = _labels(self.labels, values)
            prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
            cumulative = 0
            for le, n in zip(self._le, buckets, strict=True):
                cumulative += n
                lines.append(f'{prefix}le="{le}"}} {cumulative}')
            lines.append(f"{self.name}_sum{{{labels}}} {_number(total)}")
            lines.append(f"{self.name}_count{{{labels}}} {cumulative}")
        return lines


# pyserving's api label -> (TF Serving's API label, entrypoint, request_count recorded).
# gRPC: prediction_service_impl.cc records Predict, Classify and Regress only. REST:
# http_server.cc records every request, API being the URL's method ("" for GETs).
REQUEST_APIS: dict[str, tuple[str, str]] = {
    "Predict": ("Predict", "GRPC"),
    "Classify": ("Classify", "GRPC"),
    "Regress": ("Regress", "GRPC"),
    "rest_predict": ("predict", "REST"),
    "rest_classify": ("classify", "REST"),
    "rest_regress": ("regress", "REST"),
    "rest_model_status": ("", "REST"),
    "rest_model_metadata": ("", "REST"),
    "rest_malformed": ("", "REST"),
}
# pyserving's api label -> runtime_latency's API label (predict_util.cc, classifier.cc,
# regressor.cc name the servable-level call, whatever the protocol).
RUNTIME_APIS = {
    "Predict": "Predict",
    "rest_predict": "Predict",
    "Classify": "Classify",
    "rest_classify": "Classify",
    "Regress": "Regress",
    "rest_regress": "Regress",
}


class TFServingMetrics:
    """Every TF Serving family pyserving exports; `exposition()` is their text."""

    def __init__(
        self,
        known_models: Callable[[], Collection[str]],
        thread_pool_name: str = DEFAULT_THREAD_POOL_NAME,
    ) -> None:
        self._known_models = known_models
        self.thread_pool_name = thread_pool_name
        self._paths: dict[ServableId, str] = {}
        s = "/tensorflow/serving/"
        self.request_count = Counter(s + "request_count", ("model_name", "status"))
        self.request_latency = Histogram(
            s + "request_latency", ("model_name", "API", "entrypoint"), LATENCY_BUCKETS
        )
        self.runtime_latency = Histogram(
            s + "runtime_latency", ("model_name", "API", "runtime"), LATENCY_BUCKETS
        )
        self.warmup_latency = Histogram(
            s + "model_warmup_latency", ("model_path", "status"), LATENCY_BUCKETS
        )
        self.warmup_records_read = Counter(
            s + "model_warmup_records_read", ("model_path", "status")
        )
        b = s + "batching_session/"
        self.queuing_latency = Histogram(
            b + "queuing_latency", ("thread_pool_name",), QUEUING_BUCKETS
        )
        self.input_batch_size = Histogram(b + "input_batch_size", (), BATCH_SIZE_BUCKETS)
        self.processed_batch_size = Histogram(b + "processed_batch_size", (), BATCH_SIZE_BUCKETS)
        self.padding_size = Histogram(
            b + "padding_size", ("execution_batch_size",), BATCH_SIZE_BUCKETS
        )
        self.wrapped_run_count = Counter(b + "wrapped_run_count", ())
        c = "/tensorflow/cc/saved_model/"
        self.load_attempt_count = Counter(c + "load_attempt_count", ("model_path", "status"))
        self.load_latency = Counter(c + "load_latency", ("model_path",))
        self.load_latency_by_stage = Histogram(
            c + "load_latency_by_stage", ("model_path", "stage"), LATENCY_BUCKETS
        )
        g = "/tensorflow/core/"
        self.graph_runs = Counter(g + "graph_runs", ())
        self.graph_run_time_usecs = Counter(g + "graph_run_time_usecs", ())
        self.graph_build_calls = Counter(g + "graph_build_calls", ())
        self.graph_build_time_usecs = Counter(g + "graph_build_time_usecs", ())
        self.families: tuple[Counter | Histogram, ...] = tuple(
            v for v in vars(self).values() if isinstance(v, Counter | Histogram)
        )

    def exposition(self) -> str:
        lines: list[str] = []
        for family in self.families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"

    def model_label(self, model: str) -> str:
        return model if model in self._known_models() else UNKNOWN_MODEL

    # ------------------------------------------------------------ request side
    def request_series(self, model: str, api: str) -> TFRequestSeries:
        """For the request envelope (see api/envelope/request_envelope.py SeriesFactory)."""
        label = self.model_label(model)
        return TFRequestSeries(self, label, REQUEST_APIS.get(api), label == model)

    def observe_runtime(self, handle: ServableHandle, seconds: float) -> None:
        """The request core's RuntimeObserver: runtime_latency of Predict, Classify and
        Regress (predict_util.cc, classifier.cc, regressor.cc around Session::Run, on
        success only), whatever the protocol; the API is the running request's. The model
        is a served version's (the core resolved it): no label check is needed."""
        scope = CURRENT.get(None)
        api = RUNTIME_APIS.get(scope.api) if scope is not None else None
        if api is not None:
            runtime = getattr(handle.servable, "runtime", "TF1")
            self.runtime_latency.observe((handle.model, api, runtime), seconds * 1e6)

    # ------------------------------------------------------------ TensorFlow side
    def load_attempt(self, path: str, ok: bool, micros: float) -> None:
        self.load_attempt_count.inc((path, "success" if ok else "fail"))
        self.load_latency.inc((path,), int(micros))

    def load_stage(self, path: str, stage: str, micros: float) -> None:
        self.load_latency_by_stage.observe((path, stage), micros)

    def graph_run(self, micros: float) -> None:
        self.graph_runs.inc(())
        self.graph_run_time_usecs.inc((), int(micros))

    def graph_build(self, micros: float) -> None:
        self.graph_build_calls.inc(())
        self.graph_build_time_usecs.inc((), int(micros))

    # ------------------------------------------------------------ bus side
    def handle(self, event: Event) -> None:
        """Bus subscriber: batches and warm-ups."""
        if isinstance(event, BatchRun):
            self._batch(event)
        elif isinstance(event, AspiredVersions):
            for key in [k for k in self._paths if k[0] == event.model]:
                del self._paths[key]  # only the aspired versions' paths are kept
            for v in event.versions:
                self._paths[ServableId(event.model, v.version)] = v.path
        elif isinstance(event, WarmupFinished):
            path = self._paths.get(event.servable_id, event.model)
            # TF Serving writes status.ToString() (the whole error text); that is unbounded.
            status = "OK" if not event.error else "UNKNOWN"
            self.warmup_latency.observe((path, status), event.duration_s * 1e6)
            self.warmup_records_read.inc((path, status), event.records)

    def _batch(self, event: BatchRun) -> None:
        if event.size == 0:
            return
        for wait_s in event.task_waits_s:
            self.queuing_latency.observe((self.thread_pool_name,), wait_s * 1e6)
        for size in event.task_sizes:
            for _ in range(event.inputs):  # TF records dim 0 of each input tensor of a task
                self.input_batch_size.observe((), size)
        self.padding_size.observe((str(event.padded_size),), event.padded_size - event.size)
        self.processed_batch_size.observe((), event.padded_size)
        self.wrapped_run_count.inc(())


class TFRequestSeries:
    """One (model, api)'s TF Serving request cells, kept by the envelope."""

    __slots__ = ("_count", "_entry", "_label", "_latency", "cacheable")

    def __init__(
        self,
        metrics: TFServingMetrics,
        label: str,
        entry: tuple[str, str] | None,
        cacheable: bool,
    ) -> None:
        self._count = metrics.request_count
        self._latency = metrics.request_latency
        self._label = label
        self._entry = entry
        self.cacheable = cacheable

    def observe(self, code: str, seconds: float) -> None:
        if self._entry is None:
            return  # an API TF Serving does not count (GetModelMetadata, MultiInference, ...)
        self._count.inc((self._label, code))
        if code == "OK":
            api, entrypoint = self._entry
            self._latency.observe((self._label, api, entrypoint), seconds * 1e6)


class TeeSeries:
    """Hands each finished request to several series (pyserving's and TF Serving's)."""

    __slots__ = ("_series", "cacheable")

    def __init__(self, series: Sequence[Any]) -> None:
        self._series = tuple(series)
        self.cacheable = all(s.cacheable for s in self._series)

    def observe(self, code: str, seconds: float) -> None:
        for series in self._series:
            series.observe(code, seconds)


def tee_series(*factories: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    if len(factories) == 1:
        return factories[0]
    return lambda model, api: TeeSeries([f(model, api) for f in factories])
