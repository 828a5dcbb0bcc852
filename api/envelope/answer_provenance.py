"""Which model bytes made an answer, as each protocol carries it beside TF Serving's schema.

TF Serving's replies have no field for it, so it travels where its clients do not look:
gRPC trailing metadata and an HTTP response header (both protocols), and the Open
Inference Protocol's response `parameters`, which that protocol keeps for such things.
The fingerprint's two forms are adapters/loaders/provenance.py's.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyserving.adapters.protos.model_registry_pb2 import ListModelsRequest
from pyserving.engine.data_plane import DataPlane
from pyserving.engine.errors import ServingError

FINGERPRINT_KEY = "x-model-fingerprint"  # gRPC trailing metadata and HTTP header
VERSION_KEY = "x-model-version"
FINGERPRINT_PARAMETER = "model_fingerprint"  # the Open Inference Protocol's parameters


def answer_metadata(version: int, fingerprint: str) -> tuple[tuple[str, str], ...]:
    """The gRPC trailing metadata (and HTTP headers) of an answer: the version that
    answered and its fingerprint (none when the version has none)."""
    if not fingerprint:
        return ((VERSION_KEY, str(version)),)
    return ((VERSION_KEY, str(version)), (FINGERPRINT_KEY, fingerprint))


async def described_version(
    plane: DataPlane, model: str, named: int | None, serving: Sequence[str]
) -> tuple[int, str] | None:
    """The version a ModelMetadata answer describes (the one named, else the latest serving)
    and its fingerprint, from ListModels: the protocol's metadata message has no field for
    it. None when the listing cannot say (a model gone meanwhile)."""
    version = named if named is not None else max((int(v) for v in serving), default=None)
    if version is None:
        return None
    try:
        listing = await plane.list_models(ListModelsRequest(model_name=model))
    except ServingError:
        return None
    for info in listing.models:
        for status in info.versions:
            if status.version == version and status.fingerprint:
                return version, status.fingerprint
    return None
