"""`--monitoring_config_file`: TF Serving's MonitoringConfig text proto, read with its own schema.

The `tensorflow-serving-api` wheel lacks `tensorflow_serving/config/monitoring_config.proto`,
so protos/monitoring_config.proto copies it with TF Serving's exact package,
names and field numbers (tensorflow/serving, tensorflow_serving/config/monitoring_config.proto):

    package tensorflow.serving;
    message PrometheusConfig { bool enable = 1; string path = 2; }
    message MonitoringConfig { PrometheusConfig prometheus_config = 1; }

A file TF Serving accepts is accepted here, and an unknown field is an
error naming it, as in TF Serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format

from pyserving.adapters.protos.monitoring_config_pb2 import MonitoringConfig
from pyserving.adapters.text_proto import parse_text_proto
from pyserving.api.text_proto_schema import read_flag_file
from pyserving.engine.errors import ConfigurationError

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath


class MonitoringConfigError(ConfigurationError):
    """The monitoring config file cannot be used; the message says why and what to fix."""


@dataclass(frozen=True)
class PrometheusSettings:
    enabled: bool
    path: str


def parse_monitoring_config(text: str, source: str = "<text>") -> PrometheusSettings:
    """Parse a MonitoringConfig text proto; an empty `path` means TF Serving's default."""
    try:
        config = parse_text_proto(MonitoringConfig, text)
    except text_format.ParseError as exc:
        raise MonitoringConfigError(
            f"{source} is not a valid MonitoringConfig text proto ({exc}); expected e.g. "
            f'prometheus_config {{ enable: true, path: "{DEFAULT_PATH}" }}'
        ) from None
    prometheus = config.prometheus_config
    path = prometheus.path or DEFAULT_PATH
    if not path.startswith("/"):
        raise MonitoringConfigError(
            f"{source}: prometheus_config.path must start with '/', got {path!r}"
        )
    return PrometheusSettings(enabled=bool(prometheus.enable), path=path)


def load_monitoring_config(path: str) -> PrometheusSettings:
    """Metrics settings from `--monitoring_config_file`; no file means on, at the default path.

    TF Serving exports nothing without the file; pyserving exports by default (whenever
    the HTTP port is open), and a file with `enable: false` turns that off.
    """
    if not path:
        return PrometheusSettings(enabled=True, path=DEFAULT_PATH)
    text = read_flag_file("monitoring_config_file", path, MonitoringConfigError)
    return parse_monitoring_config(text, source=path)
