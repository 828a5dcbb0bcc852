"""TF Serving's REST JSON formats ⇄ numpy: shapes, dtypes, b64, NaN, and every refusal."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from pyserving.api.envelope import json_body
from pyserving.api.envelope.tensor_budget import TensorBudget
from pyserving.api.tfserving import rest_codec
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec

F32 = np.dtype(np.float32)


def signature(**inputs: np.dtype) -> Signature:
    return Signature(
        name="sig",
        method_name="tensorflow/serving/predict",
        inputs={k: TensorSpec(k, v, None) for k, v in inputs.items()},
        outputs={},
    )


def decode(
    body: str | bytes, sig: Signature, max_elements: int = 1 << 20, max_bytes: int = 1 << 30
):
    """As the handler does: parse, read the signature name, then decode for the signature."""
    doc = json_body.parse_body(body.encode() if isinstance(body, str) else body)
    rest_codec.signature_name(doc)
    return rest_codec.decode_predict(doc, sig, TensorBudget(max_elements, max_bytes))


def refused(body: str, sig: Signature) -> str:
    with pytest.raises(ServingError) as info:
        decode(body, sig)
    assert info.value.code == Code.INVALID_ARGUMENT, info.value
    return info.value.message


def test_row_format_batches_instances_with_the_signature_dtype() -> None:
    inputs, columnar = decode('{"instances": [[1, 2.5], [3, 4]]}', signature(x=F32))
    assert not columnar
    assert inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(inputs["x"], np.array([[1, 2.5], [3, 4]], np.float32))


def test_row_format_with_named_inputs_and_b64_bytes() -> None:
    sig = signature(x=np.dtype(np.int64), s=np.dtype(object))
    body = json.dumps(
        {
            "instances": [
                {"x": [1, 2], "s": {"b64": base64.b64encode(b"\x00\xff").decode()}},
                {"x": [3, 4], "s": "text"},
            ]
        }
    )
    inputs, _ = decode(body, sig)
    np.testing.assert_array_equal(inputs["x"], np.array([[1, 2], [3, 4]], np.int64))
    assert inputs["s"].tolist() == [b"\x00\xff", b"text"]


def test_columnar_format_single_and_named() -> None:
    inputs, columnar = decode('{"inputs": [[1.0], [2.0]]}', signature(x=F32))
    assert columnar and inputs["x"].shape == (2, 1)
    sig = signature(a=F32, b=np.dtype(np.bool_))
    inputs, _ = decode('{"inputs": {"a": 1.5, "b": [true, false], "ignored": 1}}', sig)
    assert inputs["a"].shape == () and inputs["b"].tolist() == [True, False]
    assert set(inputs) == {"a", "b"}  # TF Serving ignores keys the signature lacks


def test_nan_and_infinity_are_accepted_as_numbers() -> None:
    inputs, _ = decode('{"inputs": [NaN, Infinity, -Infinity, 1]}', signature(x=F32))
    values = inputs["x"]
    assert np.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "The document is empty"),
        ("not json", "JSON Parse error"),
        ("[1, 2]", "Is not object"),
        ('{"instances": [[1]], "inputs": [[1]]}', "only one of 'inputs' or 'instances'"),
        ('{"signature_name": "sig"}', "Missing 'inputs' or 'instances' key"),
        ('{"instances": []}', "No values in 'instances' array"),
        ('{"instances": 3}', "'instances' to be an list/array"),
        ('{"instances": [[1, 2], [3]]}', "Failed to process element: 1 of 'instances' list"),
        ('{"inputs": [[1, 2], [3]]}', "is ragged"),
        ('{"instances": [["a"]]}', 'JSON Value: "a" Type: String is not of expected type: float'),
        ('{"instances": [[null]]}', "Type: Null is not of expected type: float"),
        ('{"instances": [[1e39]]}', "without loss of precision"),
        ('{"instances": [[16777217]]}', "without loss of precision"),
        ('{"signature_name": 3, "instances": [[1]]}', "'signature_name' key must be a string"),
    ],
)
def test_bad_bodies_say_what_to_fix(body: str, expected: str) -> None:
    assert expected in refused(body, signature(x=F32))


def test_integer_inputs_refuse_floats_and_out_of_range_values() -> None:
    sig = signature(x=np.dtype(np.int32))
    assert "is not of expected type: int32" in refused('{"inputs": [1.5]}', sig)
    assert "out of range for int32" in refused('{"inputs": [3000000000]}', sig)
    inputs, _ = decode('{"inputs": [-2147483648, 2147483647]}', sig)
    assert inputs["x"].dtype == np.int32


def test_named_instances_need_every_input_and_no_other() -> None:
    sig = signature(a=F32, b=F32)
    assert "expecting list of objects" in refused('{"instances": [[1]]}', sig)
    assert "keys must be equal to: a,b" in refused('{"instances": [{"a": 1}]}', sig)
    assert "does not have named input: c" in refused('{"instances": [{"a": 1, "c": 2}]}', sig)
    assert "Missing named input: b" in refused('{"inputs": {"a": 1}}', sig)


def test_bad_b64_is_refused() -> None:
    sig = signature(s=np.dtype(object))
    assert "Unable to base64 decode" in refused('{"inputs": [{"b64": "%%%"}]}', sig)
    assert "not formatted correctly for base64" in refused('{"inputs": [{"x": "y"}]}', sig)


def test_too_many_elements_is_resource_exhausted() -> None:
    with pytest.raises(ServingError) as info:
        decode('{"inputs": [1, 2, 3]}', signature(x=F32), max_elements=2)
    assert info.value.code == Code.RESOURCE_EXHAUSTED


def test_replies_mirror_the_request_format() -> None:
    scores = np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)
    labels = np.array([b"a", b"b"], dtype=object)
    row = json.loads(rest_codec.encode_predict({"scores": scores}, columnar=False))
    assert row == {"predictions": [[0.1, 0.2], [0.3, 0.4]]}  # float32's shortest form
    both = json.loads(rest_codec.encode_predict({"scores": scores, "labels": labels}, False))
    assert both["predictions"][1] == {"labels": "b", "scores": [0.3, 0.4]}
    columnar = json.loads(rest_codec.encode_predict({"scores": scores, "labels": labels}, True))
    assert columnar == {"outputs": {"labels": ["a", "b"], "scores": [[0.1, 0.2], [0.3, 0.4]]}}
    raw = json.loads(rest_codec.encode_predict({"out_bytes": np.array([b"\xff"], object)}, True))
    assert raw == {"outputs": [{"b64": base64.b64encode(b"\xff").decode()}]}


def test_non_finite_outputs_are_written_as_tf_serving_does() -> None:
    body = rest_codec.encode_predict({"y": np.array([np.nan, np.inf, -np.inf], np.float32)}, True)
    assert body == b'{"outputs": [NaN, Infinity, -Infinity]}'


def test_rows_need_one_batch_size() -> None:
    with pytest.raises(ServingError, match="inconsistent batch size"):
        rest_codec.encode_predict({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, False)


def test_examples_become_tf_examples_with_context() -> None:
    doc = {
        "context": {"lang": "en"},
        "examples": [{"x": [1.5, 2.0], "n": 3, "raw": {"b64": "AAE="}}],
    }
    result = rest_codec.examples_input(doc, "classify")
    example = result.example_list_with_context.examples[0]
    assert list(example.features.feature["x"].float_list.value) == [1.5, 2.0]
    assert list(example.features.feature["n"].int64_list.value) == [3]
    assert list(example.features.feature["raw"].bytes_list.value) == [b"\x00\x01"]
    assert result.example_list_with_context.context.features.feature["lang"].bytes_list.value
    with pytest.raises(ServingError, match="key 'examples' is expected"):
        rest_codec.examples_input({}, "regress")
    with pytest.raises(ServingError, match="expecting type: float"):
        rest_codec.examples_input({"examples": [{"x": [1.5, "a"]}]}, "regress")


@pytest.mark.parametrize(
    ("body", "dtype", "fragment"),
    [
        ('{"inputs": [1e400]}', np.float32, "too big to be stored in a double"),
        ('{"inputs": [1e400, NaN]}', np.float64, "1e400 is too big to be stored in a double"),
        ('{"inputs": [-1, 18446744073709551615]}', np.int64, "18446744073709551615 is out of"),
        ('{"inputs": [-1, 18446744073709551615]}', np.uint64, "-1 is out of range for uint64"),
        ('{"inputs": [1180591620717411303424]}', np.int32, "not of expected type: int32"),
    ],
)
def test_numbers_the_dtype_cannot_hold_are_refused_naming_the_input(
    body: str, dtype: type, fragment: str
) -> None:
    with pytest.raises(ServingError) as info:
        decode(body, signature(x=np.dtype(dtype)))
    assert info.value.code == Code.INVALID_ARGUMENT
    assert "input 'x'" in info.value.message and fragment in info.value.message


def test_nan_and_infinity_tokens_are_numbers_not_out_of_range() -> None:
    inputs, _ = decode('{"inputs": [NaN, Infinity, -Infinity]}', signature(x=F32))
    assert np.isnan(inputs["x"][0]) and np.isinf(inputs["x"][1:]).all()
