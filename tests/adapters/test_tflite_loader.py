"""TFLite versions of the tensorflow platform: TF Serving's TfLiteSession choices.

Models are converted here with tf.lite.TFLiteConverter: y = 0.5x + 2 from a tf.Module
with a signature, the same graph from a TF1 Session (no SignatureDef: TF Serving
synthesises `serving_default`), and the SavedModel beside them to compare answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from pyserving.adapters.loaders.platforms import PlatformOptions, make_loader, marker_files
from pyserving.adapters.loaders.tensorflow_loader import TensorFlowServable
from pyserving.adapters.loaders.tflite_loader import TFLiteOptions, TFLiteServable
from pyserving.engine.errors import Code, ServingError
from tests.example_models import export_half_plus_two_tf2, half_plus_two
from tests.tf_serving_testdata import half_plus_two_tflite_with_sigdef, set_signature_defs


def half_plus_two_tflite() -> bytes:
    """y = 0.5x + 2 as a tf.Module with a `serving_default` signature, converted."""
    module = tf.Module()
    module.a, module.b = tf.Variable(0.5), tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": module.a * x + module.b}

    module.predict = predict
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [predict.get_concrete_function()], module
    )
    return converter.convert()


def unsigned_tflite() -> bytes:
    """The same graph converted from a TF1 Session: the model has no SignatureDef."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 1], name="x")
        y = tf.add(0.5 * x, 2.0, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            return tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y]).convert()


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1: SavedModel + model.tflite; 2: SavedModel only; 3: model.tflite only (no signature)."""
    root = tmp_path_factory.mktemp("half_plus_two")
    export_half_plus_two_tf2(root / "1")
    (root / "1" / "model.tflite").write_bytes(half_plus_two_tflite())
    export_half_plus_two_tf2(root / "2")
    (root / "3").mkdir()
    (root / "3" / "model.tflite").write_bytes(unsigned_tflite())
    return root


def loader(**flags: object):
    return make_loader("tensorflow", PlatformOptions(**flags))


def test_prefer_tflite_loads_model_tflite_where_the_folder_has_one(versions: Path) -> None:
    prefer = loader(prefer_tflite_model=True, num_tflite_pools=2)
    assert isinstance(prefer.load(str(versions / "1")), TFLiteServable)
    assert isinstance(prefer.load(str(versions / "2")), TensorFlowServable)  # the fallback
    assert isinstance(loader().load(str(versions / "1")), TensorFlowServable)  # flag off


def test_use_tflite_model_has_no_fallback(versions: Path) -> None:
    always = loader(use_tflite_model=True)
    assert isinstance(always.load(str(versions / "3")), TFLiteServable)
    with pytest.raises(FileNotFoundError, match=r"model\.tflite not found"):
        always.load(str(versions / "2"))


def test_a_folder_with_only_model_tflite_is_a_version() -> None:
    assert "model.tflite" in marker_files("tensorflow")


def test_answers_equal_the_saved_models(versions: Path) -> None:
    lite = loader(prefer_tflite_model=True).load(str(versions / "1"))
    saved = loader().load(str(versions / "1"))
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    got = lite.run("serving_default", {"x": x}, ())
    assert set(got) == {"y"}
    np.testing.assert_allclose(got["y"], saved.run("serving_default", {"x": x}, ())["y"])
    np.testing.assert_allclose(got["y"][:, 0], [half_plus_two(v) for v in (1.0, 2.0, 5.0)])
    # a new batch size resizes the interpreter's input
    one = lite.run("serving_default", {"x": np.array([[4.0]], np.float32)}, ("y",))
    np.testing.assert_allclose(one["y"], [[4.0]])


def test_signatures_come_from_the_signature_runner(versions: Path) -> None:
    lite = loader(prefer_tflite_model=True).load(str(versions / "1"))
    signature = lite.signatures["serving_default"]
    assert list(signature.inputs) == ["x"] and list(signature.outputs) == ["y"]
    assert signature.inputs["x"].dtype == np.float32 and signature.inputs["x"].shape == (None, 1)
    defs = lite.signature_def_map().signature_def
    assert list(defs) == ["serving_default"]
    x = defs["serving_default"].inputs["x"]
    assert x.dtype == tf.float32.as_datatype_enum and x.name == "serving_default_x:0"
    assert [d.size for d in x.tensor_shape.dim] == [-1, 1]
    assert defs["serving_default"].method_name == "tensorflow/serving/predict"


def test_a_model_without_signatures_gets_tf_servings_serving_default(versions: Path) -> None:
    lite = loader(use_tflite_model=True).load(str(versions / "3"))
    defs = lite.signature_def_map().signature_def
    assert list(defs) == ["serving_default"]
    default = defs["serving_default"]
    assert list(default.inputs) == ["x"] and list(default.outputs) == ["y"]  # legacy names
    assert default.method_name == "tensorflow/serving/predict"
    assert [d.size for d in default.inputs["x"].tensor_shape.dim] == [1, 1]  # the dims
    got = lite.run("serving_default", {"x": np.array([[2.0], [6.0]], np.float32)}, ())
    np.testing.assert_allclose(got["y"], [[3.0], [5.0]])


def test_wrong_dtype_is_invalid_argument(versions: Path) -> None:
    lite = loader(prefer_tflite_model=True, num_tflite_pools=1).load(str(versions / "1"))
    with pytest.raises(ServingError) as caught:
        lite.run("serving_default", {"x": np.ones((2, 1), np.float64)}, ())
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "expects dtype float but double was provided" in str(caught.value)
    ok = lite.run("serving_default", {"x": np.ones((2, 1), np.float32)}, ())  # still serves
    np.testing.assert_allclose(ok["y"], [[2.5], [2.5]])


@pytest.mark.parametrize("version", ["1", "3"], ids=["signature runner", "main subgraph"])
@pytest.mark.parametrize("shape", [(2, 3), (2,), (1, 1)])
def test_a_shape_the_tensor_lacks_is_resized_to(
    versions: Path, version: str, shape: tuple[int, ...]
) -> None:
    """TfLiteSession resizes an input to the fed shape (ResizeInputTensor) and runs: the
    signature's [-1,1] refuses nothing the model itself can take."""
    lite = loader(prefer_tflite_model=True, num_tflite_pools=1).load(str(versions / version))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    got = lite.run("serving_default", {"x": x}, ())
    np.testing.assert_allclose(got["y"], 0.5 * x + 2.0)
    again = lite.run("serving_default", {"x": np.ones((2, 1), np.float32)}, ())  # and back
    np.testing.assert_allclose(again["y"], [[2.5], [2.5]])


def test_large_batches_split_across_the_pool(versions: Path) -> None:
    """--num_tflite_interpreters_per_pool=4: chunks of ceil(500/4) = 125 rows, in parallel."""
    lite = loader(
        prefer_tflite_model=True, num_tflite_pools=3, num_tflite_interpreters_per_pool=4
    ).load(str(versions / "1"))
    x = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    got = lite.run("serving_default", {"x": x}, ())
    np.testing.assert_allclose(got["y"], 0.5 * x + 2.0)


def test_pool_size_follows_num_tflite_pools(versions: Path) -> None:
    servable = TFLiteServable(str(versions / "1"), TFLiteOptions(prefer=True, num_pools=3))
    assert servable._pool.size == 3
    assert TFLiteServable(str(versions / "1"), TFLiteOptions(num_pools=0))._pool.size == 1


def test_unload_frees_the_interpreters_and_refuses_later_runs(versions: Path) -> None:
    lite = loader(prefer_tflite_model=True, num_tflite_pools=2).load(str(versions / "1"))
    lite.run("serving_default", {"x": np.ones((1, 1), np.float32)}, ())
    lite.unload()
    assert lite.closed
    with pytest.raises(ServingError) as caught:
        lite.run("serving_default", {"x": np.ones((1, 1), np.float32)}, ())
    assert caught.value.code == Code.UNAVAILABLE


def test_a_file_that_is_no_tflite_model_fails_the_load(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="is no TensorFlow Lite model"):
        loader(prefer_tflite_model=True).load(str(tmp_path))


def test_signature_defs_metadata_names_the_inputs(tmp_path: Path) -> None:
    """A model carrying TF SignatureDefs (signature_defs_metadata) is served by them, as
    TfLiteSession serves it: the alias `x` feeds tensor `tflite_input`."""
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.tflite").write_bytes(half_plus_two_tflite_with_sigdef())
    lite = loader(prefer_tflite_model=True, num_tflite_pools=1).load(str(tmp_path / "1"))
    (default,) = lite.signatures.values()
    assert list(default.inputs) == ["x"] and default.inputs["x"].name == "tflite_input"
    got = lite.run("serving_default", {"x": np.array([2.0], np.float32)}, ())
    np.testing.assert_allclose(got["y"], [3.0])  # [1] fed to a [1,1] tensor: resized


def test_a_signature_def_naming_no_tensor_fails_the_load(tmp_path: Path) -> None:
    v1 = tf.compat.v1
    signature = v1.saved_model.signature_def_utils.build_signature_def(
        {"x": meta_graph_pb2.TensorInfo(name="nowhere:0", dtype=tf.float32.as_datatype_enum)},
        {"y": meta_graph_pb2.TensorInfo(name="y:0", dtype=tf.float32.as_datatype_enum)},
        "tensorflow/serving/predict",
    )
    (tmp_path / "1").mkdir()
    model = set_signature_defs(unsigned_tflite(), {"serving_default": signature})
    (tmp_path / "1" / "model.tflite").write_bytes(model)
    with pytest.raises(ValueError, match="Signature input x references an unknown tensor"):
        loader(prefer_tflite_model=True).load(str(tmp_path / "1"))
