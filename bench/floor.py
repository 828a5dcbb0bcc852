"""The floor: a minimal grpc.aio Predict server with a canned reply of the real shape.

What gRPC in Python costs per request, with no model and no checks: no Python server
answering the same protos can beat it. `python -m bench.floor --port=PORT
[--event_loop=uvloop|asyncio]`: on the loop pyserving serves on by default (uvloop), so a
ratio to it is pyserving's own cost; on asyncio's, what the loop alone buys.
"""

from __future__ import annotations

import argparse

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from pyserving.api.serving_loop import EVENT_LOOPS, run_on_loop


def canned_reply() -> predict_pb2.PredictResponse:
    reply = predict_pb2.PredictResponse()
    reply.model_spec.name = "mnist"
    reply.model_spec.version.value = 1
    reply.model_spec.signature_name = "predict_images"
    scores = reply.outputs["scores"]
    scores.dtype = 1  # DT_FLOAT
    scores.tensor_shape.dim.add(size=1)
    scores.tensor_shape.dim.add(size=10)
    scores.float_val.extend(np.full(10, 0.1, dtype=np.float32).tolist())
    return reply


class FloorService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self._reply = canned_reply()

    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return self._reply


async def serve(port: int) -> None:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(FloorService(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"floor listening on {port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--event_loop", choices=EVENT_LOOPS, default="uvloop")
    args = parser.parse_args()
    run_on_loop(serve(args.port), args.event_loop)


if __name__ == "__main__":
    main()
