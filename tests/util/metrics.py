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


def sample_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of the sample `name` whose labels include `labels`, in an exposition's
    text (None when there is none); TF Serving's ':'-names parse like any other."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    return None
