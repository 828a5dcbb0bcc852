"""A stand-in front-end process, until `pyserving.api.frontend` (issue 32) exists.

`python -m tests.util.stand_in_frontend --engine_address=ADDRESS --port=PORT [...]` takes
the front-end's command line (other flags are ignored), serves gRPC Predict (pyserving's
PredictionService over a RemoteDataPlane: one "infer" call to the engine a request) and
gRPC health (one "health" call) on PORT, shared with other front-ends (gRPC sets
SO_REUSEPORT), and serves until killed. No REST, no envelope, no metrics: enough for the
bench's echo floor (`python -m bench.cores --frontend-module=tests.util.stand_in_frontend`)
and its test to run front-ends started by hand against an engine.
"""

from __future__ import annotations

import argparse

from pyserving.adapters.tf_protos import import_api_protos

import_api_protos()  # no TensorFlow runtime, as a front-end

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

from pyserving.adapters.ipc import EngineClient  # noqa: E402
from pyserving.adapters.ipc.data_plane import RemoteDataPlane  # noqa: E402
from pyserving.api.prediction_service import PredictionService  # noqa: E402
from pyserving.api.serving_loop import run_on_loop  # noqa: E402
from pyserving.engine.request_core import PlanOptions  # noqa: E402


class Health(health_pb2_grpc.HealthServicer):
    def __init__(self, client: EngineClient) -> None:
        self._client = client

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        answer = await self._client.call("health", {"service": request.service}, None, 5)
        return health_pb2.HealthCheckResponse(status=answer.params["status"])


async def serve(address: str, port: int) -> None:
    client = EngineClient(address)
    await client.connect()
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(RemoteDataPlane(client), PlanOptions()), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(Health(client), server)
    server.add_insecure_port(f"0.0.0.0:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine_address", required=True)
    parser.add_argument("--port", type=int, required=True)
    args, _ = parser.parse_known_args()
    run_on_loop(serve(args.engine_address, args.port), "uvloop")


if __name__ == "__main__":
    main()
