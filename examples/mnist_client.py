#!/usr/bin/env python3
"""Send held-out digit images to a model server over gRPC and report the error rate.

Python 3 version of TF Serving's ``mnist_client.py``, for a model exported by
``mnist_saved_model.py`` and served by pyserving (or tensorflow_model_server)::

    python examples/mnist_client.py --num_tests=1000 --server=localhost:9000

Each test image goes out as its own ``Predict`` request (input ``images``,
shape [1, pixels]); the prediction is the argmax of the reply's ``scores``.
At most ``--concurrency`` requests are in flight at once. A failed RPC counts
as a wrong prediction and does not stop the run. The last line of stdout is
``Inference error rate: X.X%``. On a terminal, stderr shows a progress bar (tqdm) with
the RPC errors so far. The exit code is 0 even with errors, 1 when no request reached
the server at all, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from mnist_input_data import load_dataset
from tqdm import tqdm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line (exit code 2 on bad usage)."""
    parser = argparse.ArgumentParser(
        description="Send held-out digit images to a model server's Predict API "
        "over gRPC and print the inference error rate."
    )
    parser.add_argument(
        "--num_tests",
        type=int,
        default=100,
        help="number of Predict requests to send; test images are reused "
        "cyclically when this exceeds the test split (default: %(default)s)",
    )
    parser.add_argument(
        "--server",
        default="localhost:9000",
        help="PredictionService host:port (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="maximum number of requests in flight at once (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="folder holding real MNIST (mnist.npz or the four IDX files, optionally "
        ".gz); default: scikit-learn's bundled 8x8 digits. Must match the data "
        "the served model was trained on",
    )
    parser.add_argument(
        "--model_name",
        default="mnist",
        help="model name to put in the request's model_spec (default: %(default)s)",
    )
    parser.add_argument(
        "--signature_name",
        default="predict_images",
        help="signature to call (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="deadline of each RPC in seconds (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.num_tests < 1:
        parser.error("--num_tests must be >= 1")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    if not args.timeout > 0:
        parser.error("--timeout must be > 0")
    return args


def scores_to_array(tensor: Any) -> np.ndarray:
    """Decode a float TensorProto whether the server packed tensor_content or float_val."""
    if tensor.tensor_content:
        # DT_DOUBLE is 2 in types.proto; anything else is taken as DT_FLOAT (1).
        dtype = np.dtype("<f8") if tensor.dtype == 2 else np.dtype("<f4")
        return np.frombuffer(tensor.tensor_content, dtype=dtype)
    if len(tensor.float_val):
        return np.asarray(tensor.float_val, dtype=np.float32)
    return np.asarray(tensor.double_val, dtype=np.float64)


class _ResultCounter:
    """Counts outcomes and throttles in-flight requests, shared with gRPC callback threads."""

    def __init__(self, num_tests: int, concurrency: int, progress: tqdm | None = None) -> None:
        self._num_tests = num_tests
        self._progress = progress
        self._concurrency = concurrency
        self._cond = threading.Condition()
        self._active = 0
        self.done = 0
        self.wrong = 0
        self.rpc_errors = 0
        self.unavailable = 0
        self.first_rpc_error: str | None = None
        self.bad_replies = 0
        self.first_bad_reply: str | None = None
        self.elapsed = 0.0  # seconds from first request to last reply

    def throttle(self) -> None:
        """Block until fewer than ``concurrency`` requests are in flight, then take a slot."""
        with self._cond:
            while self._active >= self._concurrency:
                self._cond.wait()
            self._active += 1

    def finish(
        self,
        correct: bool,
        rpc_error: str | None = None,
        unavailable: bool = False,
        bad_reply: str | None = None,
    ) -> None:
        """Record one completed request and free its slot."""
        with self._cond:
            self.done += 1
            self._active -= 1
            if not correct:
                self.wrong += 1
            if rpc_error is not None:
                self.rpc_errors += 1
                self.unavailable += unavailable
                if self.first_rpc_error is None:
                    self.first_rpc_error = rpc_error
            if bad_reply is not None:
                self.bad_replies += 1
                if self.first_bad_reply is None:
                    self.first_bad_reply = bad_reply
            if self._progress is not None:  # under the lock: done before wait_all() returns
                self._progress.update(1)
                if rpc_error is not None:
                    self._progress.set_postfix(rpc_errors=self.rpc_errors, refresh=False)
            self._cond.notify_all()

    def wait_all(self) -> None:
        """Block until every request has completed."""
        with self._cond:
            while self.done < self._num_tests:
                self._cond.wait()


def _make_callback(counter: _ResultCounter, label: int, grpc: Any) -> Callable[[Any], None]:
    """Build the done-callback for one request; it must never raise."""

    def callback(future: Any) -> None:
        try:
            exc = future.exception()
            if exc is not None:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                name = code.name if code is not None else type(exc).__name__
                counter.finish(
                    False,
                    rpc_error=f"{name}: {details}",
                    unavailable=code == grpc.StatusCode.UNAVAILABLE,
                )
                return
            outputs = future.result().outputs
            if "scores" not in outputs:
                counter.finish(
                    False, bad_reply=f"reply has no 'scores' output (got {sorted(outputs)})"
                )
                return
            scores = scores_to_array(outputs["scores"])
            if scores.size == 0:
                counter.finish(False, bad_reply="reply's 'scores' tensor is empty")
                return
            counter.finish(int(np.argmax(scores)) == label)
        except Exception as e:  # an escaping exception would leave wait_all() hanging
            counter.finish(False, bad_reply=f"could not decode reply: {e!r}")

    return callback


def do_inference(
    args: argparse.Namespace, images: np.ndarray, labels: np.ndarray
) -> _ResultCounter:
    """Send ``args.num_tests`` Predict requests, at most ``args.concurrency`` at a time."""
    from pyserving.adapters.tensorflow_import import import_tensorflow

    import_tensorflow()  # without its C++ start-up lines; TF_CPP_MIN_LOG_LEVEL=0 shows them
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    pixels = images.shape[1]
    # disable=None: a bar on a terminal only, so logs and pipes get no control characters.
    progress = tqdm(total=args.num_tests, unit="req", file=sys.stderr, disable=None)
    counter = _ResultCounter(args.num_tests, args.concurrency, progress)
    start = time.perf_counter()
    with progress, grpc.insecure_channel(args.server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(args.num_tests):
            k = i % images.shape[0]
            request = predict_pb2.PredictRequest()
            request.model_spec.name = args.model_name
            request.model_spec.signature_name = args.signature_name
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[k], shape=[1, pixels]))
            counter.throttle()
            future = stub.Predict.future(request, timeout=args.timeout)
            future.add_done_callback(_make_callback(counter, int(labels[k]), grpc))
        counter.wait_all()
    counter.elapsed = time.perf_counter() - start
    return counter


def main(argv: list[str] | None = None) -> int:
    """Run the test and print the error rate; returns the exit code."""
    args = parse_args(argv)
    try:
        data = load_dataset(args.data)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    counter = do_inference(args, data.test_images, data.test_labels)
    elapsed = counter.elapsed
    print(
        f"{counter.done} requests in {elapsed:.2f}s ({counter.done / elapsed:.1f}/s, "
        f"concurrency {args.concurrency})",
        file=sys.stderr,
    )

    # Every request UNAVAILABLE: nothing is listening, as opposed to a model
    # that answers badly. Still print the summary so stdout keeps its shape.
    unreachable = counter.unavailable == args.num_tests
    if unreachable:
        print(
            f"error: could not reach a model server at {args.server} "
            f"({counter.first_rpc_error}).\n"
            "Start the model server first, e.g. tensorflow_model_server "
            f"--port={args.server.rsplit(':', 1)[-1]} --model_name={args.model_name} "
            "--model_base_path=<export_dir given to mnist_saved_model.py>, "
            "or point --server at a running one.",
            file=sys.stderr,
        )
    if counter.rpc_errors:
        print(f"RPC errors: {counter.rpc_errors} (first: {counter.first_rpc_error})")
    if counter.bad_replies:
        print(f"Bad replies: {counter.bad_replies} (first: {counter.first_bad_reply})")
    print(f"Inference error rate: {100 * counter.wrong / args.num_tests:.1f}%")
    return 1 if unreachable else 0


if __name__ == "__main__":
    sys.exit(main())
