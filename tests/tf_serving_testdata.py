"""TF Serving's own test models, built here as its testdata script builds them.

Adapted from TF Serving's
`tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py`
(Copyright 2015 The TensorFlow Authors, Apache License 2.0, as pyserving itself): the
same graphs, variables, signatures and converter calls, so each model here is the model
of the folder of that name in TF Serving's testdata, which its integration tests
(`tensorflow_model_server_test.py`) serve:

- `saved_model_half_plus_two_tf2_cpu`: `HalfPlusTwoModel`, a tf.Module saved by
  `tf.saved_model.save` with five classify/regress signatures and `serving_default`;
- `saved_model_half_plus_two_tflite`: the TF1 graph converted from its Session, input
  `x` fixed to [1,1] by `ensure_shape`;
- `saved_model_half_plus_two_tflite_with_sigdef`: the same with the input named
  `tflite_input` and the predict SignatureDef (`x` → `tflite_input:0`, `y` → `y:0`)
  written into the model's `signature_defs_metadata`, as TF Lite's
  `signature_def_utils.set_signature_defs` (not in the pip wheel) writes it.

y = 0.5 x + 2 (y2 = 0.5 x + 3, y3 = 0.5 x2 + 3).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

SIGNATURE_DEFS_METADATA = "signature_defs_metadata"  # TF Lite's kSignatureDefsMetadataName
VERSION = 123  # the testdata's version folder, 00000123


def _feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """tensorflow.Example contains two features "x" and "x2"."""
    return {
        "x": tf.io.FixedLenFeature([1], dtype=tf.float32),
        "x2": tf.io.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
    }


def _asset(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "foo.txt"
    path.write_text("asset-file-contents")
    return path


class HalfPlusTwoModel(tf.Module):
    """Native TF2 half-plus-two model (the script's class, unchanged in substance)."""

    def __init__(self, asset_dir: Path) -> None:
        self.a = tf.Variable(0.5, name="a")
        self.b = tf.Variable(2.0, name="b")
        self.c = tf.Variable(3.0, name="c")
        self.asset = tf.saved_model.Asset(str(_asset(asset_dir)))

    def compute(self, x, inc):
        return tf.add(tf.multiply(self.a, x), inc)

    def get_serving_signatures(self):
        return {
            "regress_x_to_y": self.regress_xy,
            "regress_x_to_y2": self.regress_xy2,
            "regress_x2_to_y3": self.regress_x2y3,
            "classify_x_to_y": self.classify_xy,
            "classify_x2_to_y3": self.classify_x2y3,
            tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: self.predict,
        }

    @tf.function(input_signature=[tf.TensorSpec(shape=[1], dtype=tf.float32)])
    def predict(self, x=tf.constant([0], shape=[1], dtype=tf.float32)):  # noqa: B008 (as the script)
        return {"y": self.compute(x, self.b)}

    @tf.function(input_signature=[tf.TensorSpec([None], dtype=tf.string, name="inputs")])
    def regress_xy(self, serialized_proto):
        x = tf.io.parse_example(serialized_proto, _feature_spec())["x"]
        return {"outputs": self.compute(x, self.b)}

    @tf.function(input_signature=[tf.TensorSpec([None], dtype=tf.string, name="inputs")])
    def regress_xy2(self, serialized_proto):
        x = tf.io.parse_example(serialized_proto, _feature_spec())["x"]
        return {"outputs": self.compute(x, self.c)}

    @tf.function(input_signature=[tf.TensorSpec(shape=[1], dtype=tf.float32, name="inputs")])
    def regress_x2y3(self, x2):
        return {"outputs": self.compute(x2, self.c)}

    @tf.function(input_signature=[tf.TensorSpec([None], dtype=tf.string, name="inputs")])
    def classify_xy(self, serialized_proto):
        x = tf.io.parse_example(serialized_proto, _feature_spec())["x"]
        return {"scores": self.compute(x, self.b)}

    @tf.function(input_signature=[tf.TensorSpec(shape=[1], dtype=tf.float32, name="inputs")])
    def classify_x2y3(self, x2):
        return {"scores": self.compute(x2, self.c)}


def export_half_plus_two_tf2_cpu(base_path: Path) -> Path:
    """`saved_model_half_plus_two_tf2_cpu`: base_path/00000123, as `tf2=True` writes it."""
    export_dir = base_path / f"{VERSION:08d}"
    model = HalfPlusTwoModel(base_path.parent / f"{base_path.name}-original-assets")
    tf.saved_model.save(model, str(export_dir), signatures=model.get_serving_signatures())
    return export_dir


def _tflite_from_session(with_sigdef: bool) -> bytes:
    """The script's TF1 graph with `as_tflite` or `as_tflite_with_sigdef`, converted."""
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        with tf.device("/cpu:0"):
            a = tf.Variable(0.5, name="a")
            b = tf.Variable(2.0, name="b")
            serialized_tf_example = v1.placeholder(tf.string, name="tf_example", shape=[None])
            tf_example = tf.io.parse_example(serialized_tf_example, _feature_spec())
            if with_sigdef:
                # As the script: x is first the identity named "x", then replaced by the
                # input the converter names "tflite_input".
                x = tf.identity(tf_example["x"], name="x")
                x = tf.ensure_shape(tf_example["x"], (1, 1), name="tflite_input")
            else:
                # TFLite v1 converter does not support unknown shape.
                x = tf.ensure_shape(tf_example["x"], (1, 1), name="x")
            y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
        predict_signature_def = v1.saved_model.signature_def_utils.build_signature_def(
            {"x": v1.saved_model.utils.build_tensor_info(x)},
            {"y": v1.saved_model.utils.build_tensor_info(y)},
            v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        sess.run(v1.global_variables_initializer())
        model = v1.lite.TFLiteConverter.from_session(sess, [x], [y]).convert()
    if with_sigdef:
        model = set_signature_defs(model, {"serving_default": predict_signature_def})
    return model


def half_plus_two_tflite() -> bytes:
    """`saved_model_half_plus_two_tflite/00000123/model.tflite`."""
    return _tflite_from_session(with_sigdef=False)


def half_plus_two_tflite_with_sigdef() -> bytes:
    """`saved_model_half_plus_two_tflite_with_sigdef/00000123/model.tflite`."""
    return _tflite_from_session(with_sigdef=True)


def set_signature_defs(model: bytes, signature_defs: dict) -> bytes:
    """TF Lite's SetSignatureDefMap: a flexbuffer map, signature key → serialized
    SignatureDef, in a new buffer named by the model's `signature_defs_metadata`."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    builder = flexbuffers.Builder()
    with builder.Map():
        for key, signature_def in signature_defs.items():
            builder.Key(key)
            # fbb.String(key, SerializeAsString()): a flexbuffer string of proto bytes
            builder._WriteBlob(
                signature_def.SerializeToString(), append_zero=True, type_=flexbuffers.Type.STRING
            )
    data = builder.Finish()
    unpacked = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = list(data)
    unpacked.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name = SIGNATURE_DEFS_METADATA
    metadata.buffer = len(unpacked.buffers) - 1
    unpacked.metadata = [*(unpacked.metadata or []), metadata]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(unpacked))


def write_version(base_path: Path, model: bytes) -> Path:
    """base_path/00000123/model.tflite (the TFLite testdata folders hold only that file)."""
    version = base_path / f"{VERSION:08d}"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.tflite").write_bytes(model)
    return version
