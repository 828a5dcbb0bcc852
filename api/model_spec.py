"""Reading and writing TF Serving's ModelSpec."""

from __future__ import annotations

from dataclasses import dataclass

from pyserving.engine.errors import invalid_argument
from tensorflow_serving.apis import model_pb2


@dataclass(frozen=True)
class ModelRequest:
    name: str
    version: int | None
    label: str | None


def parse_model_spec(spec: model_pb2.ModelSpec) -> ModelRequest:
    if not spec.name:
        raise invalid_argument("model_spec.name is empty: set it to the name of the model to call")
    has_version = spec.HasField("version")
    if has_version and spec.version_label:
        raise invalid_argument(
            "model_spec has both version and version_label: set at most one of them"
        )
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
