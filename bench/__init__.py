"""`python -m bench`: pyserving with and without batching, between gRPC's floor and the
model's ceiling."""

import pyserving  # noqa: F401 - first: TensorFlow runs as the server runs it (its __init__)
