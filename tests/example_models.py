"""Real models for the Classify/Regress/warm-up/platform tests, exported in the test itself.

The TF1 model is built as older exporters and TF Serving's own test models are: a
graph, a session, a lookup table, and `tf.compat.v1.saved_model.Builder` with
classification, regression and predict SignatureDefs. The TF2 model is a tf.Module
whose functions take serialized tf.Examples (their method name is `predict`, as
tf.saved_model.save always writes). Both compute z = w*x + bias with w = 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
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


# --------------------------------------------------------- TF Serving's half_plus_two
HALF, TWO = 0.5, 2.0


def half_plus_two(x: float) -> float:
    return HALF * x + TWO


def export_half_plus_two_tf1(path: Path) -> Path:
    """TF Serving's test model `saved_model_half_plus_two`, as its exporter builds it.

    `x` is a placeholder [None, 1] that defaults to the parsed tf.Example feature, so the
    predict signature feeds it directly and classify/regress feed serialized examples.
    """
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        x = v1.placeholder_with_default(parsed["x"], shape=[None, 1], name="x")
        a = v1.get_variable("a", initializer=tf.constant(HALF))
        b = v1.get_variable("b", initializer=tf.constant(TWO))
        y = tf.add(a * x, b, name="y")
        session.run(v1.global_variables_initializer())
        sigs = v1.saved_model
        builder = sigs.Builder(str(path))
        builder.add_meta_graph_and_variables(
            session,
            ["serve"],
            signature_def_map={
                "serving_default": sigs.predict_signature_def({"x": x}, {"y": y}),
                "classify_x_to_y": sigs.classification_signature_def(serialized, None, y),
                "regress_x_to_y": sigs.regression_signature_def(serialized, y),
            },
            strip_default_attrs=True,
        )
        builder.save()
    return path


def export_half_plus_two_tf2(path: Path) -> Path:
    """The same model as `tf.saved_model.save` writes it (TF Serving's `_tf2_cpu` variant)."""
    module = tf.Module()
    module.a, module.b = tf.Variable(HALF), tf.Variable(TWO)
    examples = tf.TensorSpec([None], tf.string, name="inputs")

    def from_examples(inputs: tf.Tensor) -> tf.Tensor:
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        return module.a * x + module.b

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": module.a * x + module.b}

    @tf.function(input_signature=[examples])
    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": from_examples(inputs)}

    @tf.function(input_signature=[examples])
    def regress(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": from_examples(inputs)}

    module.predict, module.classify, module.regress = predict, classify, regress
    signatures = {
        "serving_default": predict.get_concrete_function(),
        "classify_x_to_y": classify.get_concrete_function(),
        "regress_x_to_y": regress.get_concrete_function(),
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def x_example(x: float) -> tf.train.Example:
    """A tf.Example with the single float feature `x` that half_plus_two parses."""
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[x]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feature}))


# ------------------------------------------------------------------- other TF2 exports
def export_keras_sequential(path: Path) -> tuple[Path, Callable[[np.ndarray], np.ndarray]]:
    """A small Keras Sequential model exported for serving; returns it in-process too."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(4,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path, lambda x: np.asarray(model(x))


VOCABULARY = ("apple", "banana", "cherry")


def export_vocabulary_table(path: Path, scratch: Path) -> Path:
    """A StaticHashTable initialised from an asset file: words → ids (-1 when unknown).

    The vocabulary file is deleted after the export, so the served version can only use
    the copy in its own assets/ folder, fed to the graph by the SavedModel's asset map.
    """
    vocabulary = scratch / "vocabulary.txt"
    vocabulary.write_text("\n".join(VOCABULARY) + "\n")
    module = tf.Module()
    module.table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            str(vocabulary),
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        ),
        default_value=-1,
    )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
    def lookup(words: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"ids": module.table.lookup(words)}

    module.lookup = lookup
    tf.saved_model.save(module, str(path), signatures={"serving_default": lookup})
    vocabulary.unlink()
    return path


def export_big_variable_model(path: Path, mib: int) -> Path:
    """A version holding one `mib` MiB float32 variable: y = x + v[0] (v is all zeros).

    Big enough that one version kept in memory after its unload breaks a memory bound.
    """
    module = tf.Module()
    module.v = tf.Variable(tf.zeros([mib * (1 << 20) // 4], tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x + module.v[0]}

    module.predict = predict
    tf.saved_model.save(module, str(path), signatures={"serving_default": predict})
    return path
