"""The `python` platform through a real server: discovery, load, warm-up, Predict,
Regress, metadata, status, a version swap, a broken version, and unload at shutdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tests.e2e.conftest import FAST_FLAGS
from tests.example_models import example, write_warmup_requests
from tests.util.processes import process_figures
from tests.util.python_models import write_python_version, write_scaling_version

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus


def predict(server, x: list[list[float]]) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "py"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    return server.predict_stub.Predict(request, timeout=30)


def test_python_model_lifecycle_and_apis(tmp_path: Path, start_server) -> None:
    models, marker, log = tmp_path / "models", tmp_path / "unloaded.txt", tmp_path / "events.jsonl"
    write_scaling_version(models, 1, factor=2.0, unload_marker=marker)
    # version 1 warms up with a recorded Regress request, like a SavedModel would
    record = prediction_log_pb2.PredictionLog()
    record.regress_log.request.model_spec.signature_name = "regress"
    record.regress_log.request.input.example_list.examples.append(example(1.0))
    write_warmup_requests(models / "1", [record])

    server = start_server(
        "--model_name=py",
        f"--model_base_path={models}",
        "--model_platform=python",
        f"--event_log={log}",
        *FAST_FLAGS,
    )
    server.wait_serving()

    reply = predict(server, [[1.0, 2.0], [0.5, 0.5]])
    assert list(reply.outputs["y"].float_val) == [6.0, 2.0]
    assert reply.model_spec.version.value == 1

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "py"
    regress.model_spec.signature_name = "regress"
    regress.input.example_list.examples.extend([example(1.5), example(-1.0)])
    values = server.predict_stub.Regress(regress, timeout=30).result.regressions
    assert [r.value for r in values] == [3.0, -2.0]

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "py"
    metadata.metadata_field.append("signature_def")
    defs = get_model_metadata_pb2.SignatureDefMap()
    server.predict_stub.GetModelMetadata(metadata, timeout=30).metadata["signature_def"].Unpack(
        defs
    )
    assert defs.signature_def["regress"].method_name == "tensorflow/serving/regress"

    # a broken version 3 fails alone; version 1 keeps serving
    (models / ".staging-3").mkdir()
    (models / ".staging-3" / "model.py").write_text("SIGNATURES = {}\n")
    (models / ".staging-3").rename(models / "3")
    server.wait_for(lambda: server.version_states("py").get(3) == ModelVersionStatus.END)
    assert predict(server, [[1.0, 1.0]]).model_spec.version.value == 1

    # version 4 replaces both: loaded, then version 1 unloaded (its unload() runs)
    write_scaling_version(models, 4, factor=10.0, unload_marker=marker)
    server.wait_for(
        lambda: server.version_states("py").get(1) == ModelVersionStatus.END,
        what="version 1 unloaded",
    )
    assert server.version_states("py")[4] == ModelVersionStatus.AVAILABLE
    reply = predict(server, [[1.0, 1.0]])
    assert (reply.model_spec.version.value, list(reply.outputs["y"].float_val)) == (4, [20.0])
    assert marker.read_text() == "1\n"

    assert server.stop() == 0
    assert marker.read_text() == "1\n4\n"  # shutdown unloads the serving version too
    kinds = [json.loads(line)["kind"] for line in log.read_text().splitlines()]
    assert kinds.count("warmup_finished") == 1


# A python servable whose state sits in a reference cycle: only the cyclic collector frees
# it, so its memory comes back at unload only if the server collects then.
CYCLIC_MODEL_PY = """
import numpy as np

SIGNATURES = {"serving_default": {"inputs": {"x": ("float32", [None])},
                                  "outputs": {"y": ("float32", [None])}}}


class State:
    def __init__(self, mib):
        self.itself = self
        self.data = np.ones(mib * (1 << 20) // 8)


def load(path):
    return State(%d)


def predict(state, inputs):
    return {"y": inputs["x"] + np.float32(state.data[0])}
"""


def test_an_unloaded_python_version_is_collected(tmp_path: Path, start_server) -> None:
    mib = 256
    base = tmp_path / "py"

    def add_version(version: int) -> None:
        write_python_version(base, version, CYCLIC_MODEL_PY % mib, {})

    add_version(1)
    server = start_server(
        "--model_name=py", f"--model_base_path={base}", "--model_platform=python", *FAST_FLAGS
    )
    server.wait_serving(timeout=120)
    assert list(predict(server, [1.0]).outputs["y"].float_val) == [2.0]
    one_serving = process_figures(server.process.pid).rss_mib
    for version in (2, 3, 4):
        add_version(version)
        server.wait_for(
            lambda v=version: server.version_states("py").get(v - 1) == ModelVersionStatus.END,
            timeout=60,
            what=f"version {version - 1} ended",
        )
        assert predict(server, [1.0]).model_spec.version.value == version
        rss = process_figures(server.process.pid).rss_mib
        assert rss <= one_serving + 0.15 * mib, (version, one_serving, rss)
