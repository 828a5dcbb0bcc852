"""Classify and Regress semantics, as TF Serving's classifier.cc and regressor.cc define them.

Platform-neutral: it checks a `Signature` (aliases, dtypes, method name) before anything
runs, and checks the model's outputs after, with TF Serving's wording and codes, so a
client sees the same error from pyserving as from `tensorflow_model_server`. The
`inputs` tensor always receives serialized `tf.Example`s (a string tensor [N]).

TF Serving checks a signature's `method_name` only with
`--enable_signature_method_name_check` (default false, so that TF2 models, whose
signatures all say `predict`, can classify); without it the signature's shape decides:
one `inputs` input, and `classes`/`scores` (classify) or `outputs` (regress) outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pyserving.engine.errors import invalid_argument
from pyserving.engine.servable import Servable, Signature, TensorSpec
from pyserving.engine.signature_checks import DEFAULT_SIGNATURE, dtype_name

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
OUTPUTS = "outputs"


def tf_dtype_name(dtype: np.dtype) -> str:
    """TF's enum name ("DT_FLOAT", "DT_STRING"), as TF Serving's messages print it."""
    return "DT_" + dtype_name(dtype).upper()


def shape_debug(shape: tuple[int, ...]) -> str:
    """TensorShape::DebugString: "[3,2]"."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def signature_text(signature: Signature) -> str:
    """A readable stand-in for SignatureDef::DebugString in error messages."""

    def specs(tensors: Mapping[str, TensorSpec]) -> str:
        return ", ".join(
            f"{alias}: {dtype_name(spec.dtype)}{spec.shape_text()}"
            for alias, spec in sorted(tensors.items())
        )

    return (
        f"method_name: {signature.method_name!r} inputs {{{specs(signature.inputs)}}} "
        f"outputs {{{specs(signature.outputs)}}}"
    )


def find_signature(servable: Servable, name: str) -> Signature:
    """The signature Classify/Regress asked for (empty name = serving_default)."""
    name = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {name}")
    return signature


def classification_outputs(signature: Signature, method_check: bool) -> tuple[str, ...]:
    """Check a signature can classify; return the output aliases to fetch, in TF's order."""
    if method_check and signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No classification inputs found in SignatureDef: {signature_text(signature)}"
        )
    wanted = tuple(alias for alias in (CLASSES, SCORES) if alias in signature.outputs)
    if not wanted:
        raise invalid_argument(
            f'Expected classification signature outputs to contain at least one of "{CLASSES}" '
            f'or "{SCORES}". Signature was: {signature_text(signature)}'
        )
    return wanted


def regression_outputs(signature: Signature, method_check: bool) -> tuple[str, ...]:
    """Check a signature can regress; return the output alias to fetch."""
    if method_check and signature.method_name != REGRESS_METHOD:
        raise invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No regression inputs found in SignatureDef: {signature_text(signature)}"
        )
    if OUTPUTS not in signature.outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: {signature_text(signature)}"
        )
    return (OUTPUTS,)


@dataclass(frozen=True)
class Classifications:
    """Checked classify outputs: labels and/or scores, both [num_examples, num_classes]."""

    classes: np.ndarray | None
    scores: np.ndarray | None

    @property
    def num_classes(self) -> int:
        present = self.classes if self.classes is not None else self.scores
        return 0 if present is None else int(present.shape[1])


def _check_matrix(name: str, array: np.ndarray, want: str, num_examples: int) -> None:
    if array.ndim != 2:
        raise invalid_argument(
            f"Expected Tensor shape: [batch_size num_classes] but got {shape_debug(array.shape)}"
        )
    got = tf_dtype_name(array.dtype)
    if got != want:
        raise invalid_argument(f"Expected {name} Tensor of {want}. Got: {got}")
    if array.shape[0] != num_examples:
        raise invalid_argument(
            f"Expected {name} output batch size of {num_examples}. Got: {array.shape[0]}"
        )


def check_classifications(outputs: Mapping[str, np.ndarray], num_examples: int) -> Classifications:
    classes = outputs.get(CLASSES)
    scores = outputs.get(SCORES)
    if classes is not None:
        classes = np.asarray(classes)
        _check_matrix("classes", classes, "DT_STRING", num_examples)
    if scores is not None:
        scores = np.asarray(scores)
        _check_matrix("scores", scores, "DT_FLOAT", num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    return Classifications(classes, scores)


def check_regressions(outputs: Mapping[str, np.ndarray], num_examples: int) -> np.ndarray:
    """The regression values, one float per example, from an [N] or [N,1] output."""
    if OUTPUTS not in outputs:
        raise invalid_argument(f"Could not find output tensor '{OUTPUTS}'")
    values = np.asarray(outputs[OUTPUTS])
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{shape_debug(values.shape)}"
        )
    if values.shape[0] != num_examples:
        raise invalid_argument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {values.shape[0]}"
        )
    if tf_dtype_name(values.dtype) != "DT_FLOAT":
        raise invalid_argument(
            f"Expected output Tensor of DT_FLOAT.  Got: {tf_dtype_name(values.dtype)}"
        )
    return values.reshape(num_examples)
