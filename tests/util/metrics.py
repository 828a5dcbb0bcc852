"""Reading Prometheus samples back out of a registry, for tests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    """Every sample called `name`, keyed by its sorted labels."""
    out: dict[tuple, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out
