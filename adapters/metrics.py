"""Every Prometheus metric pyserving exports, in one place, and the bus subscriber feeding them.

Lifecycle metrics come only from bus events (`handle`), never from scattered call sites:
whatever the machines do, the bus reports, so the metrics cannot disagree with the event
log. Request metrics come from the request envelope (`api/envelope/request_envelope.py`, every
protocol) through `request_series`; the batcher reports rejections through
`batch_rejected` and its queue depths through the callable given to `watch_queue_depths`.

Label values stay bounded: model names are the configured ones (anything else a client
sends is counted as `UNKNOWN_MODEL`), states and event kinds are fixed sets, and no
request id or raw user string ever becomes a label value. Versions label only the
transitions counter (a handful of series per deployed version, needed to tell v1's
history from v2's), and a version's series are removed when the manager forgets it
(`VersionForgotten`: it keeps the last few ended versions per model).

To add a metric: declare it in `ServingMetrics.__init__`, feed it from `handle` (for a
bus event) or from a method the producing component calls, and add a dashboard panel
in `dashboards/` (the Prometheus end-to-end test queries every panel).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pyserving.adapters.request_log.writer import DROP_REASONS as REQUEST_LOG_DROP_REASONS
from pyserving.engine.events import (
    EVENT_TYPES,
    AspiredVersions,
    BatchRun,
    Event,
    LoadFailed,
    LoadSucceeded,
    PromotionGatesSet,
    PromotionVerdict,
    Transition,
    UnloadFinished,
    VersionForgotten,
    VersionQuiesced,
    WarmupFinished,
)
from pyserving.engine.servable_id import ServableId
from pyserving.statemachines.servable_version import TRANSITIONS, State

UNKNOWN_MODEL = "_unknown_"

# Seconds: a cached TensorFlow call is sub-millisecond, a cold one or a big batch seconds.
REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Loads of real SavedModels take from a fraction of a second to minutes.
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
PADDING_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
WARMUP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

LEGAL_MOVES: tuple[tuple[str, str], ...] = tuple((t["source"], t["dest"]) for t in TRANSITIONS)

QueueDepths = Callable[[], Mapping[tuple[str, int, str], int]]
VersionStates = Callable[[], Mapping[ServableId, State]]


def new_registry() -> CollectorRegistry:
    """A private registry with the process, platform and GC collectors, as the default has.

    Private so that two servers in one process (tests) never share or collide on series.
    """
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ServingMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        known_models: Callable[[], Collection[str]],
        version_states: VersionStates | None = None,
    ) -> None:
        """`known_models` bounds the model label; `version_states` feeds the versions gauge."""
        self._known_models = known_models
        self._version_states = version_states
        self._queue_depths: QueueDepths | None = None
        self._initialised: set[tuple[str, int | None]] = set()

        self.transitions = Counter(
            "pyserving_servable_transitions",
            "State-machine transitions of servable versions.",
            ["model", "version", "from_state", "to_state"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            "pyserving_model_load_seconds",
            "Duration of successful version loads.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.unload_seconds = Histogram(
            "pyserving_model_unload_seconds",
            "Duration of version unloads, from quiesced (no request in flight) to unloaded.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.quiesce_seconds = Histogram(
            "pyserving_model_quiesce_seconds",
            "Wait of an unloading version for its in-flight requests, before its unload.",
            ["model"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.load_failures = Counter(
            "pyserving_model_load_failures",
            "Failed load attempts (each retry counts).",
            ["model"],
            registry=registry,
        )
        self.requests = Counter(
            "pyserving_requests",
            "Finished API requests by model, API and gRPC status code.",
            ["model", "api", "code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "pyserving_request_seconds",
            "API request latency, from arrival to reply.",
            ["model", "api"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "pyserving_batch_size",
            "Rows in each batch formed, before padding.",
            ["model", "signature"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_padding_rows = Histogram(
            "pyserving_batch_padding_rows",
            "Padding rows added to each batch to reach an allowed batch size.",
            ["model", "signature"],
            buckets=PADDING_BUCKETS,
            registry=registry,
        )
        self.batch_queue_seconds = Histogram(
            "pyserving_batch_queue_seconds",
            "Wait of the oldest request in each batch, from enqueue to run.",
            ["model", "signature"],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        # Mirrors TF Serving's /tensorflow/serving/model_warmup_latency.
        self.warmup_seconds = Histogram(
            "pyserving_model_warmup_seconds",
            "Wall time of running a version's warm-up requests during its load.",
            ["model", "status"],
            buckets=WARMUP_BUCKETS,
            registry=registry,
        )
        self.warmup_records = Counter(
            "pyserving_model_warmup_records",
            "Warm-up records run (each counted once, whatever the iterations).",
            ["model"],
            registry=registry,
        )
        self.batch_rejections = Counter(
            "pyserving_batch_rejections",
            "Requests the batcher refused, by reason.",
            ["model", "signature", "reason"],
            registry=registry,
        )
        self.events = Counter(
            "pyserving_events",
            "Events published on the lifecycle bus, by kind.",
            ["kind"],
            registry=registry,
        )
        for kind in EVENT_TYPES:
            self.events.labels(kind)
        # The request log (adapters/request_log): records written, and records lost.
        self.request_log_records = Counter(
            "pyserving_request_log_records",
            "Sampled requests written to the request log (logging_config).",
            registry=registry,
        )
        self.request_log_dropped = Counter(
            "pyserving_request_log_dropped",
            "Sampled requests the request log lost, by reason: queue_full (the writer is "
            "behind), write_error (the disk or folder refused), build_error.",
            ["reason"],
            registry=registry,
        )
        for reason in REQUEST_LOG_DROP_REASONS:
            self.request_log_dropped.labels(reason)
        # Promotion gates (engine/promotion.py): models and labels are the gates file's.
        self.promotion_verdicts = Counter(
            "pyserving_promotion_verdicts",
            "Promotion gate verdicts on moving a label to a new version, by verdict "
            "(passed: the label moved; failed: it stayed).",
            ["model", "label", "verdict"],
            registry=registry,
        )
        registry.register(_FunctionCollector(self._collect_gauges))

    # ------------------------------------------------------------------ bus side
    def handle(self, event: Event) -> None:
        """Bus subscriber: turn lifecycle facts and transitions into metric updates."""
        self.events.labels(event.kind).inc()
        if isinstance(event, AspiredVersions):
            self._initialise(event.model, [v.version for v in event.versions])
        elif isinstance(event, Transition):
            self._initialise(event.model, [event.version])
            self.transitions.labels(event.model, str(event.version), event.src, event.dst).inc()
        elif isinstance(event, LoadSucceeded):
            self.load_seconds.labels(event.model).observe(event.duration_s)
        elif isinstance(event, LoadFailed):
            self._initialise(event.model, [event.version])
            self.load_failures.labels(event.model).inc()
        elif isinstance(event, VersionQuiesced):
            self.quiesce_seconds.labels(event.model).observe(event.drain_s)
        elif isinstance(event, UnloadFinished):
            self.unload_seconds.labels(event.model).observe(event.duration_s)
        elif isinstance(event, VersionForgotten):
            self._forget(event.model, event.version)
        elif isinstance(event, BatchRun):
            model = self.model_label(event.model)
            self.batch_size.labels(model, event.signature).observe(event.size)
            self.batch_padding_rows.labels(model, event.signature).observe(
                max(0, event.padded_size - event.size)
            )
            self.batch_queue_seconds.labels(model, event.signature).observe(event.oldest_wait_s)
        elif isinstance(event, PromotionGatesSet):
            for model, labels in event.gates.items():
                for label in labels:
                    for verdict in ("passed", "failed"):
                        self.promotion_verdicts.labels(model, label, verdict)
        elif isinstance(event, PromotionVerdict):
            verdict = "passed" if event.passed else "failed"
            self.promotion_verdicts.labels(event.model, event.label, verdict).inc()
        elif isinstance(event, WarmupFinished):
            status = "error" if event.error else "ok"
            self.warmup_seconds.labels(event.model, status).observe(event.duration_s)
            self.warmup_records.labels(event.model).inc(event.records)

    def _initialise(self, model: str, versions: Iterable[int]) -> None:
        """Create zero-valued series before their first increment.

        A counter series that first appears already at 1 reads as no increase to
        Prometheus, so a version's moves are created when the source first aspires it
        (the bus delivers that before any of the version's transitions).
        """
        if (model, None) not in self._initialised:
            self._initialised.add((model, None))
            self.load_failures.labels(model)
            self.load_seconds.labels(model)
            self.unload_seconds.labels(model)
            self.quiesce_seconds.labels(model)
        for version in versions:
            if (model, version) not in self._initialised:
                self._initialised.add((model, version))
                for src, dst in LEGAL_MOVES:
                    self.transitions.labels(model, str(version), src, dst)

    def _forget(self, model: str, version: int) -> None:
        """Remove a forgotten version's transition series (re-created if it comes back)."""
        if (model, version) not in self._initialised:
            return
        self._initialised.discard((model, version))
        for src, dst in LEGAL_MOVES:
            self.transitions.remove(model, str(version), src, dst)

    # -------------------------------------------------------------- request side
    def model_label(self, model: str) -> str:
        """The model's label value: its name if configured, else one fixed value."""
        return model if model in self._known_models() else UNKNOWN_MODEL

    def request_series(self, model: str, api: str) -> RequestSeries:
        """The children of one (model, api), for a caller that keeps them (the request
        envelope): no `labels()` look-up per request. Not to be kept (`cacheable` False)
        for a model that is not configured, whose label may change."""
        label = self.model_label(model)
        return RequestSeries(
            self.requests, self.request_seconds.labels(label, api), label, api, label == model
        )

    # -------------------------------------------------------------- batcher side
    def batch_rejected(self, model: str, signature: str, reason: str) -> None:
        """For the batcher's `on_reject`; `reason` must be one of its fixed reason names."""
        self.batch_rejections.labels(self.model_label(model), signature, reason).inc()

    def watch_queue_depths(self, queue_depths: QueueDepths) -> None:
        """Report `pyserving_batch_queue_depth` from this callable at every scrape."""
        self._queue_depths = queue_depths

    # ---------------------------------------------------------- request log side
    def request_log_drop(self, reason: str) -> None:
        """For the request log's `on_drop`; `reason` is one of REQUEST_LOG_DROP_REASONS."""
        self.request_log_dropped.labels(reason).inc()

    def request_log_written(self) -> None:
        self.request_log_records.inc()

    # ------------------------------------------------------------ scrape time
    def _collect_gauges(self) -> Iterable[Metric]:
        versions = GaugeMetricFamily(
            "pyserving_servable_versions",
            "Servable versions in each state now.",
            labels=["model", "state"],
        )
        if self._version_states is not None:
            counts: dict[tuple[str, str], int] = {}
            for (model, _), state in self._version_states().items():
                for s in State:
                    counts.setdefault((model, s.value), 0)
                counts[(model, str(state))] += 1
            for (model, state_name), n in sorted(counts.items()):
                versions.add_metric([model, state_name], n)
        yield versions
        depth = GaugeMetricFamily(
            "pyserving_batch_queue_depth",
            "Requests waiting in each batch queue now.",
            labels=["model", "version", "signature"],
        )
        if self._queue_depths is not None:
            for (model, version, signature), n in sorted(self._queue_depths().items()):
                depth.add_metric([self.model_label(model), str(version), signature], n)
        yield depth


class _FunctionCollector(Collector):
    """A collector whose metrics a function computes at scrape time."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape time; no names to reserve up front


class RequestSeries:
    """One (model, api)'s request counter children (by code) and latency histogram child."""

    __slots__ = ("_api", "_by_code", "_label", "_requests", "_seconds", "cacheable")

    def __init__(
        self, requests: Counter, seconds: Any, label: str, api: str, cacheable: bool
    ) -> None:
        self._requests = requests
        self._seconds = seconds
        self._label = label
        self._api = api
        self._by_code: dict[str, Any] = {}
        self.cacheable = cacheable

    def observe(self, code: str, seconds: float) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._requests.labels(self._label, self._api, code)
        child.inc()
        self._seconds.observe(seconds)
