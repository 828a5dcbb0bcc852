"""Checks a request against a version's signature before anything runs.

Shared by every API (gRPC, REST). As TF Serving's `PreProcessPrediction`, the engine
checks only what the signature's *names* decide: the signature exists, the request has
its input keys, the output filter names its outputs. Dtypes and shapes are the model's
to refuse: a TensorFlow graph refuses them when it runs (INVALID_ARGUMENT with
TensorFlow's message), so a shape-[3] request to an input declared [-1,1] runs, as it
does in TF Serving. Platforms without a graph (python) call `check_tensors` themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from pyserving.engine.errors import failed_precondition, invalid_argument, quoted
from pyserving.engine.servable import Servable, Signature, TensorSpec

DEFAULT_SIGNATURE = "serving_default"


_TF_NAMES = {
    "float32": "float",
    "float64": "double",
    "float16": "half",
    "bool": "bool",
    "object": "string",
}


def dtype_name(dtype: np.dtype) -> str:
    """TF's name for a numpy dtype ("float", "int32", "string"), as TF Serving reports it."""
    if dtype.kind in "SU":
        return "string"
    return _TF_NAMES.get(dtype.name, dtype.name)


def _set_text(names: Iterable[str]) -> str:
    return "{" + ",".join(sorted(names)) + "}"


def select_signature(servable: Servable, name: str) -> Signature:
    name = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise failed_precondition(
            f'Serving signature name: "{quoted(name)}" not found in signature def. '
            f"Available signatures: {_set_text(servable.signatures)}"
        )
    return signature


def check_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """TF Serving's VerifyRequestInputsSize, then GetInputValues' key checks, in its order
    and wording: the signature's input keys, where ones with a SignatureDef default may be
    left out."""
    sent, expected = set(inputs), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({quoted(_set_text(sent))}) != len({_set_text(expected)}). "
            f"Sent extra: {quoted(_set_text(sent - expected))}. "
            f"Missing but required: {_set_text(expected - sent)}."
        )
    for alias in sorted(expected - sent):
        if alias not in signature.defaults:
            feed_name = signature.inputs[alias].name or alias
            raise invalid_argument(
                f"Signature input alias: {alias}(feed name: {feed_name}) "
                f"not found in request and no default value provided. Inputs expected to be "
                f"in the request {quoted(_set_text(sent))}, or default input alias set: "
                f"{','.join(sorted(signature.defaults))}"
            )
    if sent - expected:
        raise invalid_argument(
            f"Inputs contains invalid name. Used request inputs: "
            f"{','.join(sorted(sent & expected))}, request input: "
            f"{quoted(','.join(sorted(sent)))}"
        )


def check_tensors(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Each input's dtype and shape against the signature's, for platforms with no graph."""
    for alias, spec in signature.inputs.items():
        if alias in inputs:
            _check_tensor(alias, inputs[alias], spec, signature.name)


def check_dtypes(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Each input's dtype against the signature's (shapes left to the model)."""
    for alias, spec in signature.inputs.items():
        if alias in inputs:
            _check_dtype(alias, inputs[alias], spec, signature.name)


def _check_dtype(alias: str, array: np.ndarray, spec: TensorSpec, signature: str) -> None:
    if array.dtype != spec.dtype and not (
        spec.dtype == np.dtype(object) and array.dtype.kind in "OSU"
    ):
        raise invalid_argument(
            f"input '{alias}' of signature '{signature}' expects dtype "
            f"{dtype_name(spec.dtype)} but {dtype_name(array.dtype)} was provided"
        )


def _check_tensor(alias: str, array: np.ndarray, spec: TensorSpec, signature: str) -> None:
    _check_dtype(alias, array, spec, signature)
    given = array.shape
    if not shape_fits(spec, given):
        raise invalid_argument(
            f"input '{alias}' of signature '{signature}' has shape "
            f"[{','.join(map(str, given))}] but the signature expects {spec.shape_text()}"
        )


def shape_fits(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    """Whether `shape` is one the signature's tensor takes (unknown rank takes any)."""
    if spec.shape is None:
        return True
    return len(shape) == len(spec.shape) and all(
        want is None or want == got for want, got in zip(spec.shape, shape, strict=True)
    )


def check_output_filter(signature: Signature, output_filter: Sequence[str]) -> None:
    unknown = [name for name in output_filter if name not in signature.outputs]
    if unknown:
        raise invalid_argument(
            f"output tensor alias not found in signature: {quoted(unknown[0])} "
            f"Outputs expected to be in the set {_set_text(signature.outputs)}."
        )
    if len(set(output_filter)) != len(output_filter):
        duplicate = next(n for n in output_filter if output_filter.count(n) > 1)
        raise invalid_argument(f"duplicate output tensor alias: {quoted(duplicate)}")
