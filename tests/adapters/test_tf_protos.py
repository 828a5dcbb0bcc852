"""TF Serving's message modules without TensorFlow's runtime (front-end processes).

Each case runs in a fresh interpreter: what matters is what a process imports from its start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pyserving.adapters import tf_protos
from tests.util.processes import QUIET_ENV, ROOT

# One Predict request and one PredictResponse, built by whichever modules the process has.
BUILD_MESSAGES = """
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

def messages():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.version.value = 7
    request.model_spec.signature_name = "predict_images"
    images = request.inputs["images"]
    images.dtype = types_pb2.DT_FLOAT
    images.tensor_shape.dim.add(size=1)
    images.tensor_shape.dim.add(size=4)
    images.tensor_content = np.arange(4, dtype=np.float32).tobytes()
    request.inputs["labels"].dtype = types_pb2.DT_STRING
    request.inputs["labels"].string_val.extend([b"a", b"\\xff"])
    request.output_filter.append("scores")
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.outputs["scores"].dtype = types_pb2.DT_FLOAT
    response.outputs["scores"].float_val.extend([0.25, 0.75])
    return [m.SerializeToString(deterministic=True).hex() for m in (request, response)]
"""


def run_python(*parts: str) -> dict:
    """Run the code `parts` make in a fresh interpreter; it prints one JSON object last."""
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(textwrap.dedent(part) for part in parts)],
        cwd=ROOT,
        env=QUIET_ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_messages_and_services_work_without_tensorflows_runtime() -> None:
    without = run_python(
        """
        import json, sys
        from concurrent import futures
        from pyserving.adapters.tf_protos import import_api_protos

        loaded = import_api_protos()
        """,
        BUILD_MESSAGES,
        """
        import grpc
        from tensorflow_serving.apis import (
            get_model_status_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
            prediction_service_pb2_grpc,
        )

        class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                reply = predict_pb2.PredictResponse(model_spec=request.model_spec)
                reply.outputs["images"].CopyFrom(request.inputs["images"])
                return reply

        class Status(model_service_pb2_grpc.ModelServiceServicer):
            def GetModelStatus(self, request, context):
                context.abort(grpc.StatusCode.NOT_FOUND, request.model_spec.name)

        server = grpc.server(futures.ThreadPoolExecutor(2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(Status(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = predict_pb2.PredictRequest.FromString(bytes.fromhex(messages()[0]))
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request)
            try:
                model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                    get_model_status_pb2.GetModelStatusRequest(
                        model_spec=model_pb2.ModelSpec(name="absent")
                    )
                )
                status_code = "OK"
            except grpc.RpcError as error:
                status_code = error.code().name
        server.stop(None)
        print(json.dumps({
            "stand_in": loaded.stand_in,
            "echoed": reply.outputs["images"].SerializeToString(deterministic=True).hex(),
            "sent": request.inputs["images"].SerializeToString(deterministic=True).hex(),
            "status_code": status_code,
            "messages": messages(),
            "full_name": predict_pb2.PredictRequest.DESCRIPTOR.full_name,
            "file": predict_pb2.DESCRIPTOR.name,
            "tensorflow_loaded": "tensorflow" in sys.modules,
            "runtime_loaded": sorted(m for m in sys.modules if m.startswith("tensorflow.python")),
        }))
        """,
    )
    real = run_python(
        """
        import json, sys
        import tensorflow
        """,
        BUILD_MESSAGES,
        """
        from tensorflow_serving.apis import predict_pb2
        print(json.dumps({
            "messages": messages(),
            "full_name": predict_pb2.PredictRequest.DESCRIPTOR.full_name,
            "file": predict_pb2.DESCRIPTOR.name,
            "runtime_loaded": "tensorflow.python" in sys.modules,
        }))
        """,
    )
    assert without["stand_in"] is True
    assert without["runtime_loaded"] == []
    assert without["tensorflow_loaded"] is False
    assert without["echoed"] == without["sent"]
    assert without["status_code"] == "NOT_FOUND"
    assert real["runtime_loaded"] is True  # the other side really is TensorFlow's import
    assert without["messages"] == real["messages"]
    assert (without["full_name"], without["file"]) == (real["full_name"], real["file"])
    assert without["full_name"] == "tensorflow.serving.PredictRequest"


def test_tensorflow_imported_afterwards_is_whole_and_shares_the_messages() -> None:
    result = run_python(
        """
        import json
        from pyserving.adapters.tf_protos import import_api_protos

        first = import_api_protos()
        from tensorflow.core.framework import tensor_pb2
        from tensorflow_serving.apis import predict_pb2

        import tensorflow as tf

        proto = tf.make_tensor_proto([[1.0, 2.0]])
        request = predict_pb2.PredictRequest()
        request.inputs["x"].CopyFrom(proto)
        back = tf.make_ndarray(request.inputs["x"])
        doubled = (tf.constant(back) * 2).numpy().tolist()
        again = import_api_protos()
        print(json.dumps({
            "first": first.stand_in,
            "again": again.stand_in,
            "same_class": type(proto) is tensor_pb2.TensorProto,
            "doubled": doubled,
            "version": tf.__version__,
        }))
        """
    )
    assert result["first"] is True
    assert result["again"] is False  # TensorFlow is loaded now: the ordinary import runs
    assert result["same_class"] is True
    assert result["doubled"] == [[2.0, 4.0]]
    assert result["version"].startswith("2.")


def test_tensorflow_reached_through_the_stand_in_fails_clearly() -> None:
    stand_in = tf_protos._StandIn("tensorflow")
    with pytest.raises(ImportError, match="TensorFlow's runtime is not loaded here"):
        stand_in.constant  # noqa: B018
