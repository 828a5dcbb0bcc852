"""The Open Inference Protocol (KServe v2): its codec, gRPC service, REST routes and the
repository extension.

Imports api/envelope and engine/, never api/tfserving.
"""
