"""Which model bytes made an answer, as each protocol carries it beside TF Serving's schema.

TF Serving's replies have no field for it, so it travels where its clients do not look:
gRPC trailing metadata and an HTTP response header (both protocols), and the Open
Inference Protocol's response `parameters`, which that protocol keeps for such things.
The fingerprint's two forms are adapters/loaders/provenance.py's.
"""

from __future__ import annotations

FINGERPRINT_KEY = "x-model-fingerprint"  # gRPC trailing metadata and HTTP header
VERSION_KEY = "x-model-version"
FINGERPRINT_PARAMETER = "model_fingerprint"  # the Open Inference Protocol's parameters


def answer_metadata(version: int, fingerprint: str) -> tuple[tuple[str, str], ...]:
    """The gRPC trailing metadata (and HTTP headers) of an answer: the version that
    answered and its fingerprint (none when the version has none)."""
    if not fingerprint:
        return ((VERSION_KEY, str(version)),)
    return ((VERSION_KEY, str(version)), (FINGERPRINT_KEY, fingerprint))
