"""TF Serving's API: its gRPC services (Predict, Classify, Regress, MultiInference,
GetModelMetadata, ModelService, the profiler), its REST routes and their JSON codec, and the
SavedModel warm-up requests TF Serving defines. pyserving's own ModelRegistry listing is
served beside them on the same port.

Imports api/envelope and engine/, never api/oip.
"""
