"""`--monitoring_config_file`: TF Serving's MonitoringConfig text proto, read with its own schema.

The `tensorflow-serving-api` wheel lacks `tensorflow_serving/config/monitoring_config.proto`,
so the message classes are built here from a descriptor with TF Serving's exact package,
names and field numbers (tensorflow/serving, tensorflow_serving/config/monitoring_config.proto):

    package tensorflow.serving;
    message PrometheusConfig { bool enable = 1; string path = 2; }
    message MonitoringConfig { PrometheusConfig prometheus_config = 1; }

They live in a private descriptor pool, so a future wheel that ships the real file cannot
clash with them. A file TF Serving accepts is accepted here, and an unknown field is an
error naming it, as in TF Serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import Message

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath

_F = descriptor_pb2.FieldDescriptorProto


def _build_monitoring_config_class() -> type[Message]:
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=_F.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=_F.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    )


MonitoringConfig = _build_monitoring_config_class()


class MonitoringConfigError(ValueError):
    """The monitoring config file cannot be used; the message says why and what to fix."""


@dataclass(frozen=True)
class PrometheusSettings:
    enabled: bool
    path: str


def parse_monitoring_config(text: str, source: str = "<text>") -> PrometheusSettings:
    """Parse a MonitoringConfig text proto; an empty `path` means TF Serving's default."""
    config = MonitoringConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise MonitoringConfigError(
            f"{source} is not a valid MonitoringConfig text proto ({exc}); expected e.g. "
            f'prometheus_config {{ enable: true, path: "{DEFAULT_PATH}" }}'
        ) from None
    prometheus = config.prometheus_config  # type: ignore[attr-defined]
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
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise MonitoringConfigError(
            f"cannot read --monitoring_config_file={path} ({exc.strerror}); fix the path"
        ) from None
    return parse_monitoring_config(text, source=path)
