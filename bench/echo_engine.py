"""The engine's floor: a bare engine over the same transport, answering with canned replies.

`python -m bench.echo_engine ADDRESS [--event_loop=uvloop|asyncio]` binds ADDRESS with an
`EngineEndpoint` (the transport the real engine serves with: a task per request,
deadlines, error replies), prints "ready" and serves until killed. Front-ends started by
hand against it (`python -m pyserving.api.frontend --engine_address=ADDRESS ...`) receive
the same request messages as from the real engine and get answers of the digits model's
shapes, with no model work:
- "signature": the digits model's `predict_images` (images float32 [-1,64] -> scores
  float32 [-1,10]);
- "infer": version 1, `predict_images`, scores of 0.1 for each row of `images`;
- "health": SERVING; "observe" and anything else: an empty answer.
No TensorFlow: the API protos are imported without its runtime (tf_protos), as a
front-end does, so its CPU per request is the transport's and the loop's alone.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from pyserving.adapters.tf_protos import import_api_protos

import_api_protos()  # before data_plane's tensorflow_serving imports: no TensorFlow runtime

from pyserving.adapters.ipc import Answer, Call, EngineEndpoint  # noqa: E402
from pyserving.adapters.ipc.data_plane import signature_params  # noqa: E402
from pyserving.api.serving_loop import EVENT_LOOPS, run_on_loop  # noqa: E402
from pyserving.engine.servable import Signature, TensorSpec  # noqa: E402

SIGNATURE = "predict_images"
VERSION = 1
SERVING = 1  # grpc.health.v1.HealthCheckResponse.SERVING
DIGITS = Signature(
    SIGNATURE,
    "tensorflow/serving/predict",
    {"images": TensorSpec("images", np.dtype(np.float32), (None, 64), "images:0")},
    {"scores": TensorSpec("scores", np.dtype(np.float32), (None, 10), "Identity:0")},
)
_SIGNATURE_ANSWER = Answer(signature_params(DIGITS))
_INFER_PARAMS = {"version": VERSION, "name": SIGNATURE}
_HEALTH_ANSWER = Answer({"status": SERVING})
_EMPTY = Answer()
_SCORES: dict[int, np.ndarray] = {}  # canned outputs by row count


def scores(rows: int) -> np.ndarray:
    if rows not in _SCORES:
        _SCORES[rows] = np.full((rows, 10), 0.1, np.float32)
    return _SCORES[rows]


async def echo_handler(call: Call) -> Answer:
    """A canned answer of the digits model's shapes for every method a Predict uses."""
    if call.method == "infer":
        images = call.tensors.get("images")
        rows = images.shape[0] if images is not None and images.ndim else 1
        return Answer(_INFER_PARAMS, {"scores": scores(rows)})
    if call.method == "signature":
        return _SIGNATURE_ANSWER
    if call.method == "health":
        return _HEALTH_ANSWER
    return _EMPTY  # "observe" and anything else


async def serve(address: str) -> None:
    endpoint = EngineEndpoint(address, echo_handler)
    endpoint.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--event_loop", choices=EVENT_LOOPS, default="uvloop")
    args = parser.parse_args()
    run_on_loop(serve(args.address), args.event_loop)


if __name__ == "__main__":
    main()
