"""Reading TF Serving's ModelSpec into the core's `ModelRequest`."""

from __future__ import annotations

from tensorflow_serving.apis import model_pb2

from pyserving.api.envelope.request_records import fill_model_spec
from pyserving.engine.errors import invalid_argument
from pyserving.engine.request_core import ModelRequest

__all__ = ["ModelRequest", "fill_model_spec", "parse_model_spec"]


def parse_model_spec(spec: model_pb2.ModelSpec) -> ModelRequest:
    if not spec.name:
        raise invalid_argument("model_spec.name is empty: set it to the name of the model to call")
    # version and version_label share a oneof: the wire cannot carry both.
    has_version = spec.HasField("version")
    return ModelRequest(
        name=spec.name,
        version=spec.version.value if has_version else None,
        label=spec.version_label or None,
    )
