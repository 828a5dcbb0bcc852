"""The API layer, by protocol: tfserving/ (TF Serving's gRPC and REST), oip/ (the Open
Inference Protocol), envelope/ (what every protocol shares), commands/ (offline commands);
at the top level, the composition roots (server.py, frontend.py, protocol_servers.py) and
the flags. A protocol package never imports the other's (tests/test_layers.py).
"""
