"""Whether the OTEL_* environment asks for traces, and the tracer when it does.

Traces are off unless the standard variables name where they go: an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or an explicit
`OTEL_TRACES_EXPORTER`; `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` turn them
off. Everything else (service name, sampler, batch processor, headers, timeouts) is read
by the OpenTelemetry SDK itself. With traces off nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pyserving.engine.errors import ConfigurationError

if TYPE_CHECKING:
    from pyserving.adapters.otel_tracer import OtelTracing

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
INSTALL_HINT = "pip install 'pyserving[otel]'"


class TracingConfigError(ConfigurationError):
    """The OTEL_* variables ask for something this server cannot do; the message says what."""


def tracing_requested(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def tracing_from_environment(environ: Mapping[str, str] = os.environ) -> OtelTracing | None:
    """The tracer the OTEL_* variables ask for, or None (traces off)."""
    if not tracing_requested(environ):
        return None
    asked = ", ".join(
        name
        for name in (*ENDPOINT_VARIABLES, "OTEL_TRACES_EXPORTER")
        if environ.get(name, "").strip()
    )
    try:
        from pyserving.adapters.otel_tracer import OtelTracing
    except ImportError as exc:
        raise TracingConfigError(
            f"{asked} ask for OpenTelemetry traces, but {exc.name or 'opentelemetry'} is not "
            f"installed: {INSTALL_HINT}, or unset those variables"
        ) from None
    return OtelTracing.from_environment(environ)
