"""`python -m bench`: pyserving with and without batching, between gRPC's floor and the
model's ceiling."""
