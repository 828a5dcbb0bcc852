"""The Open Inference Protocol's calls, whatever carries them: what gRPC (grpc_service.py)
and REST (rest_routes.py) both ask of the data plane, and the parameters both read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from grpc_health.v1 import health_pb2

from pyserving.api.oip import codec as oip_codec
from pyserving.engine.data_plane import DataPlane, InferCall
from pyserving.engine.errors import invalid_argument
from pyserving.engine.request_core import (
    ModelRequest,
    Prediction,
)
from pyserving.engine.signature_checks import DEFAULT_SIGNATURE

SERVER_NAME = "pyserving"
# Request parameters pyserving reads (others, e.g. tritonclient's `timeout`, are ignored).
SIGNATURE_PARAMETER = "signature_name"
LABEL_PARAMETER = "version_label"


def model_request(name: str, version: str, label: str | None = None) -> ModelRequest:
    """The servable a request names; `version` "" is the latest, digits a version."""
    if not name:
        raise invalid_argument("the model name is empty: name the model to call")
    number = None
    if version:
        if not version.isdigit() or not version.isascii() or len(version) > 18:
            raise invalid_argument(
                f"model version {version!r} is not a version number: give its digits, or "
                f"leave it empty for the latest (a label goes in the {LABEL_PARAMETER} "
                "parameter)"
            )
        number = int(version)
    if label is not None and number is not None:
        raise invalid_argument(
            f"the request names version {version} and the label {label!r}: give one of them"
        )
    return ModelRequest(name, number, label)


def label_parameter(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_argument(f"the {LABEL_PARAMETER} parameter must be a string")
    return value


def signature_parameter(value: Any) -> str:
    if value is None:
        return DEFAULT_SIGNATURE
    if not isinstance(value, str):
        raise invalid_argument(f"the {SIGNATURE_PARAMETER} parameter must be a string")
    return value or DEFAULT_SIGNATURE


async def infer_prediction(
    plane: DataPlane,
    spec: ModelRequest,
    signature_name: str,
    inputs: Mapping[str, Any],
    wanted: Sequence[str],
    deadline: float | None,
) -> Prediction:
    """An infer request as Predict, after the protocol's datatype and shape checks against
    the signature (the protocol checks them before the model sees them, as Triton does)."""
    signature = await plane.signature(spec, signature_name)
    oip_codec.check_against_signature(spec.name, signature, inputs)
    return await plane.infer(InferCall(spec, signature.name, inputs, wanted, deadline))


async def server_ready(plane: DataPlane) -> bool:
    """ServerReady: the engine's health of the whole server is SERVING."""
    return await plane.health("") == health_pb2.HealthCheckResponse.SERVING


def output_order(prediction: Prediction, wanted: Sequence[str]) -> Sequence[str]:
    return wanted or sorted(prediction.outputs)
