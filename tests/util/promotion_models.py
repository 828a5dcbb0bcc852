"""Tiny real SavedModels for promotion gates (tests and bench/promotion_gate_latency.py):
y = factor * x, with the output's name and dtype, and how slow, chosen per version; and
recorded requests for them, as the request log writes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, predict_pb2, prediction_log_pb2

from tests.util.processes import ServerProcess

XS = np.linspace(-1.0, 1.0, 8, dtype=np.float32)


class Scaler(tf.Module):
    """y = factor * x; `output` names the answer, `dtype` its type; `work` matmuls of a
    512x512 variable feed the answer through a variable that is 0, so the answer is the
    same and no graph optimizer can drop the work (as it drops a control dependency)."""

    def __init__(
        self, factor: float, output: str = "y", dtype: tf.DType = tf.float32, work: int = 0
    ) -> None:
        super().__init__()
        self.factor = tf.Variable(factor)
        self.zero = tf.Variable(0.0)
        self.big = tf.Variable(tf.fill([512, 512], 1e-3))
        self.output, self.dtype, self.work = output, dtype, work

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        y = x * self.factor
        if self.work:
            m = self.big
            for _ in range(self.work):
                m = tf.matmul(m, self.big)
            y = y + self.zero * tf.reduce_sum(m)
        return {self.output: tf.cast(y, self.dtype)}


def export(path: Path, module: Scaler) -> Path:
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    return path


def write_requests(path: Path, n: int) -> Path:
    """Recorded predict requests, as the request log writes them (PredictionLog TFRecords)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(n):
            record = prediction_log_pb2.PredictionLog()
            request = record.predict_log.request
            request.model_spec.signature_name = "serving_default"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.roll(XS, i)))
            writer.write(record.SerializeToString())
    return path


def events(log: Path) -> list[dict]:
    """The event log's records so far (it is flushed per event)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def predict(
    server: ServerProcess, model: str, label: str = "", version: int = 0
) -> predict_pb2.PredictResponse:
    """Predict on XS by label or version, through tensorflow-serving-api's stub."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if label:
        request.model_spec.version_label = label
    if version:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(XS))
    return server.predict_stub.Predict(request, timeout=30)


def reload(server: ServerProcess, text: str) -> None:
    """Apply a ModelServerConfig text through the reload RPC (answers once it is in force)."""
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    reply = server.model_stub.HandleReloadConfigRequest(request, timeout=120)
    assert reply.status.error_code == 0, reply.status.error_message
