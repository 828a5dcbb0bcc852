"""Classify/Regress rules on signatures and outputs: TF Serving's checks, wording and codes."""

from __future__ import annotations

import numpy as np
import pytest

from pyserving.engine import classify_regress as cr
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec

STRING = np.dtype(object)
FLOAT = np.dtype(np.float32)


def spec(alias: str, dtype: np.dtype = FLOAT, shape: tuple | None = (None,)) -> TensorSpec:
    return TensorSpec(alias, dtype, shape)


def signature(method: str, inputs: dict, outputs: dict) -> Signature:
    return Signature("sig", method, inputs, outputs)


CLASSIFY = signature(
    cr.CLASSIFY_METHOD,
    {"inputs": spec("inputs", STRING)},
    {"classes": spec("classes", STRING, (None, 2)), "scores": spec("scores", FLOAT, (None, 2))},
)
REGRESS = signature(
    cr.REGRESS_METHOD, {"inputs": spec("inputs", STRING)}, {"outputs": spec("outputs")}
)
PREDICT = signature(cr.PREDICT_METHOD, {"x": spec("x")}, {"y": spec("y")})


def test_classification_signature_gives_the_outputs_to_fetch() -> None:
    assert cr.classification_outputs(CLASSIFY, method_check=True) == ("classes", "scores")
    scores_only = signature(
        cr.PREDICT_METHOD, {"inputs": spec("inputs", STRING)}, {"scores": spec("scores")}
    )
    assert cr.classification_outputs(scores_only, method_check=False) == ("scores",)


def test_method_name_check_uses_tf_servings_message() -> None:
    with pytest.raises(ServingError) as error:
        cr.classification_outputs(PREDICT, method_check=True)
    assert error.value.code is Code.INVALID_ARGUMENT
    assert error.value.message == (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict"
    )
    with pytest.raises(ServingError) as error:
        cr.regression_outputs(CLASSIFY, method_check=True)
    assert error.value.message == (
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/classify"
    )


def test_without_method_check_the_signature_shape_decides() -> None:
    with pytest.raises(ServingError) as error:
        cr.classification_outputs(PREDICT, method_check=False)
    assert error.value.code is Code.INVALID_ARGUMENT
    assert error.value.message.startswith("No classification inputs found in SignatureDef: ")
    with pytest.raises(ServingError) as error:
        cr.regression_outputs(PREDICT, method_check=False)
    assert error.value.message.startswith("No regression inputs found in SignatureDef: ")
    # a classify signature regresses no better: it has two outputs
    with pytest.raises(ServingError, match=r"^Expected one output Tensor\.$"):
        cr.regression_outputs(CLASSIFY, method_check=False)


def test_signature_structure_errors() -> None:
    two_inputs = signature(
        cr.CLASSIFY_METHOD, {"inputs": spec("inputs"), "b": spec("b")}, {"scores": spec("scores")}
    )
    with pytest.raises(ServingError, match=r"^Expected one input Tensor\.$"):
        cr.classification_outputs(two_inputs, method_check=True)
    three_outputs = signature(
        cr.CLASSIFY_METHOD,
        {"inputs": spec("inputs")},
        {"classes": spec("classes"), "scores": spec("scores"), "c": spec("c")},
    )
    with pytest.raises(ServingError, match="Expected one or two output Tensors, found 3"):
        cr.classification_outputs(three_outputs, method_check=True)
    no_known_output = signature(
        cr.CLASSIFY_METHOD, {"inputs": spec("inputs")}, {"probabilities": spec("probabilities")}
    )
    with pytest.raises(ServingError, match='at least one of "classes" or "scores"'):
        cr.classification_outputs(no_known_output, method_check=True)
    wrong_output = signature(cr.REGRESS_METHOD, {"inputs": spec("inputs")}, {"y": spec("y")})
    with pytest.raises(ServingError, match="No regression outputs found in SignatureDef"):
        cr.regression_outputs(wrong_output, method_check=True)


def test_classifications_checked_and_counted() -> None:
    classes = np.array([[b"a", b"b"], [b"a", b"b"]], dtype=object)
    scores = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    found = cr.check_classifications({"classes": classes, "scores": scores}, 2)
    assert found.num_classes == 2 and found.scores is scores
    only_scores = cr.check_classifications({"scores": scores}, 2)
    assert only_scores.classes is None and only_scores.num_classes == 2


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            {"scores": np.zeros(3, np.float32)},
            r"^Expected Tensor shape: \[batch_size num_classes\] but got \[3\]$",
        ),
        (
            {"scores": np.zeros((3, 2), np.float64)},
            r"^Expected scores Tensor of DT_FLOAT\. Got: DT_DOUBLE$",
        ),
        (
            {"classes": np.zeros((3, 2), np.float32)},
            r"^Expected classes Tensor of DT_STRING\. Got: DT_FLOAT$",
        ),
        (
            {"scores": np.zeros((2, 2), np.float32)},
            r"^Expected scores output batch size of 3\. Got: 2$",
        ),
        (
            {
                "classes": np.full((3, 3), b"c", dtype=object),
                "scores": np.zeros((3, 2), np.float32),
            },
            r"^Tensors class and score should match in dim_size\(1\)\. Got 3 vs\. 2$",
        ),
    ],
)
def test_misshapen_classify_outputs(outputs: dict, message: str) -> None:
    with pytest.raises(ServingError, match=message) as error:
        cr.check_classifications(outputs, 3)
    assert error.value.code is Code.INVALID_ARGUMENT


def test_regressions_accept_n_and_n_by_1() -> None:
    flat = cr.check_regressions({"outputs": np.array([1.0, 2.0], np.float32)}, 2)
    column = cr.check_regressions({"outputs": np.array([[1.0], [2.0]], np.float32)}, 2)
    assert flat.tolist() == column.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            np.zeros((2, 2), np.float32),
            r"^Expected output Tensor shape to be either \[batch_size\] or \[batch_size, 1\] "
            r"but got \[2,2\]$",
        ),
        (
            np.zeros(3, np.float32),
            r"^Input batch size did not match output batch size: 2 vs\. 3$",
        ),
        (np.zeros(2, np.int32), r"^Expected output Tensor of DT_FLOAT\.  Got: DT_INT32$"),
    ],
)
def test_misshapen_regress_outputs(array: np.ndarray, message: str) -> None:
    with pytest.raises(ServingError, match=message):
        cr.check_regressions({"outputs": array}, 2)


def test_find_signature_names_the_missing_one() -> None:
    class Holder:
        signatures = {"serving_default": CLASSIFY}

    # ignored below: a stand-in with only .signatures
    assert cr.find_signature(Holder(), "") is CLASSIFY  # type: ignore[arg-type]
    with pytest.raises(ServingError, match=r"^No signature was found with the name: nope$"):
        # ignored below: a stand-in with only .signatures
        cr.find_signature(Holder(), "nope")  # type: ignore[arg-type]
