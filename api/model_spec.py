"""Reading and writing TF Serving's ModelSpec."""

from __future__ import annotations

from dataclasses import dataclass

from tensorflow_serving.apis import model_pb2

from pyserving.engine.errors import invalid_argument


@dataclass(frozen=True)
class ModelRequest:
    name: str
    version: int | None
    label: str | None


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


def fill_model_spec(
    out: model_pb2.ModelSpec, name: str, version: int, signature_name: str | None = None
) -> None:
    out.name = name
    out.version.value = version
    if signature_name is not None:
        out.signature_name = signature_name
