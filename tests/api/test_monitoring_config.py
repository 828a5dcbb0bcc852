"""--monitoring_config_file: TF Serving's MonitoringConfig text proto, wire format and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyserving.api.monitoring_config import (
    DEFAULT_PATH,
    MonitoringConfig,
    MonitoringConfigError,
    PrometheusSettings,
    load_monitoring_config,
    parse_monitoring_config,
)


def test_tf_serving_field_numbers_on_the_wire() -> None:
    """prometheus_config = 1 { enable = 1 (bool), path = 2 (string) } in tensorflow.serving."""
    config = MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = "/x"
    assert config.SerializeToString() == b"\x0a\x06\x08\x01\x12\x02/x"
    assert MonitoringConfig.DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"


def test_the_tf_serving_docs_example() -> None:
    text = 'prometheus_config {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n'
    assert parse_monitoring_config(text) == PrometheusSettings(True, DEFAULT_PATH)


def test_custom_path_and_default_path() -> None:
    assert parse_monitoring_config('prometheus_config { enable: true path: "/m" }').path == "/m"
    assert parse_monitoring_config("prometheus_config { enable: true }").path == DEFAULT_PATH


def test_disabled_when_enable_is_missing_or_false() -> None:
    assert not parse_monitoring_config("").enabled
    assert not parse_monitoring_config("prometheus_config { enable: false }").enabled


def test_no_file_means_metrics_at_the_default_path() -> None:
    assert load_monitoring_config("") == PrometheusSettings(True, DEFAULT_PATH)


def test_unknown_field_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enabled: true }")
    with pytest.raises(MonitoringConfigError, match=r'no field named "enabled"') as info:
        load_monitoring_config(str(path))
    assert str(path) in str(info.value) and "enable: true" in str(info.value)


def test_relative_path_is_refused() -> None:
    with pytest.raises(MonitoringConfigError, match="must start with '/'"):
        parse_monitoring_config('prometheus_config { enable: true path: "metrics" }')


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(MonitoringConfigError, match="cannot read --monitoring_config_file"):
        load_monitoring_config(str(tmp_path / "absent.config"))
