"""The TensorFlow platform as TF Serving's SavedModelBundle: TF1 graphs and TF2 exports load
into a Session, answer with TF Serving's input semantics (the graph, not the server, refuses
a dtype or shape), give the same results as the model called in-process, and hand their
memory back when unloaded."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, regression_pb2

from pyserving.adapters.loaders.tensorflow_loader import TensorFlowLoader, TensorFlowServable
from pyserving.api.tfserving.example_plans import plan_classify, plan_regress
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import PlanOptions, run_now
from pyserving.engine.signature_checks import check_inputs
from tests.conftest import BigModel
from tests.example_models import (
    VOCABULARY,
    export_half_plus_two_tf1,
    export_half_plus_two_tf2,
    export_keras_sequential,
    export_tf2_model,
    export_vocabulary_table,
    half_plus_two,
    x_example,
)
from tests.util.processes import process_figures

OPTIONS = PlanOptions()


@pytest.fixture(scope="module", params=["tf1", "tf2"])
def half_plus_two_model(request: pytest.FixtureRequest, tmp_path_factory) -> TensorFlowServable:
    export = export_half_plus_two_tf1 if request.param == "tf1" else export_half_plus_two_tf2
    path = export(tmp_path_factory.mktemp(f"hpt_{request.param}") / "1")
    servable = TensorFlowLoader().load(str(path))
    yield servable
    servable.unload()


def run(servable: TensorFlowServable, signature: str = "serving_default", **inputs):
    check_inputs(servable.signatures[signature], inputs)
    return servable.run(signature, inputs, ())


@pytest.mark.parametrize(
    "x",
    [[2.0], [2.0, 3.0, 4.0], [[2.0]], [[2.0], [3.0], [4.0]]],
    ids=["shape[1]", "shape[3]", "shape[1,1]", "shape[3,1]"],
)
def test_half_plus_two_answers_what_tf_serving_answers(half_plus_two_model, x) -> None:
    """x is declared [-1,1]; TF Serving feeds what was sent and the graph broadcasts."""
    sent = np.array(x, np.float32)
    [y] = run(half_plus_two_model, x=sent).values()
    assert y.shape == sent.shape
    np.testing.assert_allclose(y, np.vectorize(half_plus_two)(sent))


def test_signatures_come_from_the_signature_def_map(half_plus_two_model) -> None:
    sigs = half_plus_two_model.signatures
    assert set(sigs) == {"serving_default", "classify_x_to_y", "regress_x_to_y"}
    spec = sigs["serving_default"].inputs["x"]
    assert (spec.dtype, spec.shape) == (np.dtype(np.float32), (None, 1))
    assert spec.name  # the graph tensor it feeds
    assert set(half_plus_two_model.signature_def_map().signature_def) >= set(sigs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([[2.0]], np.float64), "double"),
        (np.array([b"2"], dtype=object), "string"),
        (np.array([[2]], np.int32), "int32"),
    ],
    ids=["double", "string", "int32"],
)
def test_a_dtype_the_graph_refuses_is_invalid_argument_with_tensorflows_message(
    half_plus_two_model, value: np.ndarray, message: str
) -> None:
    with pytest.raises(ServingError) as error:
        run(half_plus_two_model, x=value)
    assert error.value.code is Code.INVALID_ARGUMENT
    assert message in error.value.message and "float" in error.value.message
    assert "Traceback" not in error.value.message and 'File "' not in error.value.message


def test_missing_and_extra_inputs_get_tf_servings_wording(half_plus_two_model) -> None:
    sig = half_plus_two_model.signatures["serving_default"]
    one = np.ones((1, 1), np.float32)
    with pytest.raises(ServingError, match=r"input size does not match signature: 2!=1 "
                       r"len\(\{x,z\}\) != len\(\{x\}\). Sent extra: \{z\}. "
                       r"Missing but required: \{\}."):  # fmt: skip
        check_inputs(sig, {"x": one, "z": one})
    with pytest.raises(ServingError, match=r"input size does not match signature: 0!=1"):
        check_inputs(sig, {})
    with pytest.raises(ServingError) as error:
        check_inputs(sig, {"z": one})  # same count, other key: GetInputValues' message
    assert error.value.message.startswith(
        f"Signature input alias: x(feed name: {sig.inputs['x'].name}) not found in request "
        "and no default value provided. Inputs expected to be in the request {z}"
    )
    assert error.value.code is Code.INVALID_ARGUMENT


def test_half_plus_two_classifies_and_regresses_examples(half_plus_two_model) -> None:
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.extend([x_example(2.0), x_example(4.0)])
    reply = run_now(half_plus_two_model, plan_classify(half_plus_two_model, classify, OPTIONS), 1)
    scores = [[c.score for c in cls.classes] for cls in reply.result.classifications]
    assert scores == [[3.0], [4.0]]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(x_example(3.0))
    reply = run_now(half_plus_two_model, plan_regress(half_plus_two_model, regress, OPTIONS), 1)
    assert [r.value for r in reply.result.regressions] == [3.5]


def in_process(path: Path, signature: str, **inputs) -> dict[str, np.ndarray]:
    """What the export answers when called in-process through its TF2 signature function."""
    function = tf.saved_model.load(str(path)).signatures[signature]
    return {
        k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()
    }


def test_tf2_module_with_two_signatures(tmp_path: Path) -> None:
    path = export_tf2_model(tmp_path / "1")
    servable = TensorFlowLoader().load(str(path))
    examples = np.array([x_example(1.0).SerializeToString()] * 2, dtype=object)
    for signature in ("serving_default", "regress"):
        got = run(servable, signature, inputs=examples)
        want = in_process(path, signature, inputs=examples)
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    servable.unload()


def test_keras_sequential(tmp_path: Path) -> None:
    path, model = export_keras_sequential(tmp_path / "1")
    servable = TensorFlowLoader().load(str(path))
    [signature] = [s for s in servable.signatures.values() if s.name == "serving_default"]
    [alias] = signature.inputs
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    [got] = run(servable, **{alias: x}).values()
    np.testing.assert_allclose(got, model(x), rtol=1e-6)
    with pytest.raises(ServingError) as error:  # rank 1: Dense's matmul refuses it
        run(servable, **{alias: x[0]})
    assert error.value.code is Code.INVALID_ARGUMENT
    servable.unload()


def test_lookup_table_built_from_an_asset_file(tmp_path: Path) -> None:
    path = export_vocabulary_table(tmp_path / "1", tmp_path)
    servable = TensorFlowLoader().load(str(path))
    words = np.array([b"banana", b"kiwi", b"apple"], dtype=object)
    [ids] = run(servable, words=words).values()
    assert ids.tolist() == [VOCABULARY.index("banana"), -1, VOCABULARY.index("apple")]
    np.testing.assert_array_equal(ids, in_process(path, "serving_default", words=words)["ids"])
    servable.unload()


def test_unloaded_version_cannot_run(tmp_path: Path) -> None:
    servable = TensorFlowLoader().load(str(export_half_plus_two_tf1(tmp_path / "1")))
    servable.unload()
    assert servable.closed
    with pytest.raises(ServingError) as error:
        servable.run("serving_default", {"x": np.ones((1, 1), np.float32)}, ())
    assert error.value.code is Code.UNAVAILABLE


def rss_mib() -> float:
    return process_figures(os.getpid()).rss_mib


def test_unload_returns_the_variables_memory(big_model: BigModel) -> None:
    """Closing the Session frees the variables; nothing waits for Python's collector."""
    mib = big_model.mib
    gc.collect()
    before = rss_mib()
    servable = TensorFlowLoader().load(str(big_model.export_dir / "1"))
    assert run(servable, x=np.array([1.0], np.float32))["y"].tolist() == [1.0]
    loaded = rss_mib()
    assert loaded - before > 0.8 * mib  # the variable is really in this process
    gc.disable()  # the memory must come back without the cyclic collector's help
    try:
        servable.unload()
        after = rss_mib()
    finally:
        gc.enable()
    assert after - before < 0.15 * mib, (before, loaded, after)


def test_tags_that_match_no_meta_graph_say_which_there_are(tmp_path: Path) -> None:
    path = export_half_plus_two_tf1(tmp_path / "1")
    with pytest.raises(
        ValueError, match=r"has no MetaGraph tagged \['gpu'\]; found \[\['serve'\]\]"
    ):
        TensorFlowLoader(tags=("gpu",)).load(str(path))
