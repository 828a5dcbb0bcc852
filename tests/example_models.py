"""Real models for the Classify/Regress/warm-up/platform tests, exported in the test itself.

The TF1 model is built as older exporters and TF Serving's own test models are: a
graph, a session, a lookup table, and `tf.compat.v1.saved_model.Builder` with
classification, regression and predict SignatureDefs. The TF2 model is a tf.Module
whose functions take serialized tf.Examples (their method name is `predict`, as
tf.saved_model.save always writes). Both compute z = w*x + bias with w = 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

W = 2.0
LABELS = ("neg", "pos")
FEATURES = {
    "x": tf.io.FixedLenFeature([], tf.float32),
    "bias": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
}


def example(x: float, bias: float | None = None) -> tf.train.Example:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    if bias is not None:
        feature["bias"] = tf.train.Feature(float_list=tf.train.FloatList(value=[bias]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def expected_z(x: float, bias: float = 0.0) -> float:
    return W * x + bias


def expected_scores(x: float, bias: float = 0.0) -> tuple[float, float]:
    z = expected_z(x, bias)
    pos = 1.0 / (1.0 + float(tf.math.exp(-z)))
    return 1.0 - pos, pos


def export_tf1_model(path: Path) -> Path:
    """classify_x (= serving_default), regress_x, predict_x, and two misshapen signatures."""
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = tf.io.parse_example(serialized, FEATURES)
        w = v1.get_variable("w", initializer=tf.constant(W))
        z = w * features["x"] + features["bias"]
        scores = tf.stack([tf.sigmoid(-z), tf.sigmoid(z)], axis=1)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([0, 1], tf.int64), tf.constant(list(LABELS))
            ),
            default_value="?",
        )
        indices = tf.tile(tf.constant([[0, 1]], tf.int64), [tf.shape(z)[0], 1])
        classes = table.lookup(indices)
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        session.run([v1.global_variables_initializer(), v1.tables_initializer()])

        sigs = v1.saved_model
        classify = sigs.classification_signature_def(serialized, classes, scores)
        builder = sigs.Builder(str(path))
        builder.add_meta_graph_and_variables(
            session,
            ["serve"],
            signature_def_map={
                "serving_default": classify,
                "classify_x": classify,
                "regress_x": sigs.regression_signature_def(serialized, tf.expand_dims(z, 1)),
                "regress_flat": sigs.regression_signature_def(serialized, z),
                "predict_x": sigs.predict_signature_def({"x": x}, {"y": w * x}),
                "classify_bad_scores": sigs.classification_signature_def(serialized, None, z),
                "regress_two_columns": sigs.regression_signature_def(serialized, scores),
            },
            main_op=v1.tables_initializer(),
            strip_default_attrs=True,
        )
        builder.save()
    return path


def export_tf2_model(path: Path) -> Path:
    """serving_default classifies and `regress` regresses, both on serialized Examples."""
    module = tf.Module()
    module.w = tf.Variable(W)
    spec = tf.TensorSpec([None], tf.string, name="inputs")

    def linear(inputs: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_example(inputs, FEATURES)
        return module.w * features["x"] + features["bias"]

    @tf.function(input_signature=[spec])
    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        z = linear(inputs)
        scores = tf.stack([tf.sigmoid(-z), tf.sigmoid(z)], axis=1)
        classes = tf.tile(tf.constant([list(LABELS)]), [tf.shape(z)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[spec])
    def regress(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": linear(inputs)}

    module.classify, module.regress = classify, regress
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            "serving_default": classify.get_concrete_function(),
            "regress": regress.get_concrete_function(),
        },
    )
    return path


def write_warmup_requests(version_path: Path, records: Iterable[prediction_log_pb2.PredictionLog]):
    """Write `assets.extra/tf_serving_warmup_requests` as TF Serving expects it."""
    folder = Path(version_path) / "assets.extra"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(target)) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return target


def classify_log(
    signature: str = "", xs: Iterable[float] = (1.0,)
) -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    request = record.classify_log.request
    request.model_spec.name = "recorded"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return record
