"""Warm-up as metrics: how long each version's warm-up took, and how many records ran.

A bus subscriber over `WarmupFinished`, registered on the registry the server exposes.
The latency histogram mirrors TF Serving's `/tensorflow/serving/model_warmup_latency`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from pyserving.engine.events import Event, WarmupFinished

WARMUP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)


class WarmupMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "pyserving_model_warmup_seconds",
            "Wall time of replaying a version's warm-up requests during its load.",
            ["model", "status"],
            buckets=WARMUP_BUCKETS,
            registry=registry,
        )
        self.records = Counter(
            "pyserving_model_warmup_records",
            "Warm-up records replayed (each counted once, whatever the iterations).",
            ["model"],
            registry=registry,
        )

    def __call__(self, event: Event) -> None:
        if not isinstance(event, WarmupFinished):
            return
        status = "error" if event.error else "ok"
        self.latency.labels(event.model, status).observe(event.duration_s)
        self.records.labels(event.model).inc(event.records)
