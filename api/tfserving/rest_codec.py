"""TF Serving's REST JSON ⇄ numpy: the row (`instances`) and columnar (`inputs`) formats.

Follows TF Serving's `util/json_tensor.cc`: a body is one JSON object; `instances` is a
list with one entry per batch row (plain values for a one-input signature, or objects
keyed by input name), `inputs` is the whole tensor (or an object of tensors); bytes
travel as `{"b64": "..."}`; `NaN`, `Infinity` and `-Infinity` are accepted as numbers and
written back as such; replies mirror the request's format (`predictions` / `outputs`).
A number literal too big for a double (`1e400`) is not Infinity: it is refused with a 400
naming the input, as TF Serving's rapidjson reader refuses it. (orjson reads it as
Infinity, but only where the body has no NaN/Infinity token, which orjson refuses: so in
a body orjson read, a non-finite number can only be such a literal.)

Speed: orjson parses the body, and each tensor becomes a numpy array with one
`np.asarray` call (numpy walks the nested lists in C) and vectorised type and range
checks; no Python loop runs per element except for string tensors. Replies are written
by orjson straight from the numpy arrays; only a float output holding NaN or ±Infinity
takes the slower standard-library path, because orjson would write those as null.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from pyserving.api.envelope.json_body import (
    OutOfRange,
    TokenDocument,
    dumps,
    json_type,
    refuse_out_of_range,
    short,
)
from pyserving.api.envelope.tensor_budget import TensorBudget, shape_text
from pyserving.engine.errors import Code, ServingError, invalid_argument, quoted
from pyserving.engine.servable import Signature
from pyserving.engine.signature_checks import dtype_name

INSTANCES = "instances"
INPUTS = "inputs"
SIGNATURE_NAME = "signature_name"
B64 = "b64"
BYTES_SUFFIX = "_bytes"  # outputs whose name ends so are written as {"b64": ...}
_NUMPY_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


# ----------------------------------------------------------------------------- parsing


def signature_name(doc: Mapping[str, Any]) -> str:
    name = doc.get(SIGNATURE_NAME, "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {short(name)} not formatted correctly. 'signature_name' key must "
            "be a string value."
        )
    return name


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


# ------------------------------------------------------------------ JSON → numpy tensors
def decode_predict(
    doc: Mapping[str, Any], signature: Signature, budget: TensorBudget
) -> tuple[dict[str, np.ndarray], bool]:
    """The request's tensors for `signature`, and whether the request was columnar. JSON
    spells out every value, so what they take is bounded by the body; they are still
    charged to the request's budget, the same account as every other codec's."""
    has_instances, has_inputs = INSTANCES in doc, INPUTS in doc
    if has_instances and has_inputs:
        raise invalid_argument(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to "
            "exist: send the row format (instances) or the columnar format (inputs), not both"
        )
    if not signature.inputs:
        raise invalid_argument(f"Failed to get input map for signature: {signature.name}")
    finite = not isinstance(doc, TokenDocument)
    if has_instances:
        inputs = _from_instances(doc[INSTANCES], signature, finite)
    elif has_inputs:
        inputs = _from_inputs(doc[INPUTS], signature, finite)
    else:
        raise invalid_argument(
            "Missing 'inputs' or 'instances' key: send {\"instances\": [row, ...]} or "
            '{"inputs": tensor}'
        )
    for name, array in inputs.items():
        budget.claim(name, array.shape, array.dtype)
    return inputs, has_inputs


def _from_instances(instances: Any, signature: Signature, finite: bool) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid_argument(f"Excepting 'instances' to be an list/array, got {short(instances)}")
    if not instances:
        raise invalid_argument(
            "No values in 'instances' array: send at least one instance (one per batch row)"
        )
    names = sorted(signature.inputs)
    first = instances[0]
    named = isinstance(first, dict) and not _is_b64(first)
    if not named:
        if len(names) > 1:
            raise invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple input "
                f"tensors required as per tensorinfo_map: send objects with keys {','.join(names)}"
            )
        for i, item in enumerate(instances):
            if isinstance(item, dict) and not _is_b64(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
        name = names[0]
        return {name: _rows_to_array(instances, signature.inputs[name].dtype, name, finite)}
    wanted = set(names)
    for i, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise invalid_argument(f"Expecting object but got list at item {i} of input list")
        if set(item) != wanted:
            unknown = sorted(set(item) - wanted)
            if unknown:
                raise invalid_argument(
                    f"Failed to process element: {i} key: {unknown[0]} of 'instances' list. "
                    f"Error: JSON object: does not have named input: {unknown[0]}"
                )
            raise invalid_argument(
                f"Failed to process element: {i} of 'instances' list. JSON object: "
                f"{short(item)} keys must be equal to: {','.join(names)}"
            )
    return {
        name: _rows_to_array(
            [item[name] for item in instances], signature.inputs[name].dtype, name, finite
        )
        for name in names
    }


def _rows_to_array(rows: list[Any], dtype: np.dtype, name: str, finite: bool) -> np.ndarray:
    try:
        return to_array(rows, dtype, name, finite)
    except _Ragged:
        pass
    expected = _dense_shape(rows[0])
    for i, row in enumerate(rows):
        got = _dense_shape(row)
        if got != expected:
            raise invalid_argument(
                f"Failed to process element: {i} of 'instances' list. Error: Expecting shape "
                f"{shape_text(expected)} but got: {shape_text(got)} (input '{name}'): every "
                "instance must have the same shape"
            ) from None
    raise invalid_argument(  # same outer shapes, ragged deeper down
        f"input '{name}': the instances are ragged (lists at the same depth differ in "
        "length); each instance must be a dense tensor"
    )


def _from_inputs(value: Any, signature: Signature, finite: bool) -> dict[str, np.ndarray]:
    names = sorted(signature.inputs)
    if not isinstance(value, dict) or _is_b64(value):
        if len(names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                f"tensors required as per tensorinfo_map: send {{{', '.join(names)}}} keys"
            )
        return {names[0]: _tensor(value, signature.inputs[names[0]].dtype, names[0], finite)}
    arrays = {}
    for name in names:
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _tensor(value[name], signature.inputs[name].dtype, name, finite)
    return arrays  # keys the signature lacks are ignored, as TF Serving does


def _tensor(value: Any, dtype: np.dtype, name: str, finite: bool) -> np.ndarray:
    try:
        return to_array(value, dtype, name, finite)
    except _Ragged:
        raise invalid_argument(
            f"input '{name}' is ragged: lists at the same depth must have the same length "
            "(e.g. [[1,2],[3]] is not a tensor)"
        ) from None


def _dense_shape(value: Any) -> tuple[int, ...]:
    """TF Serving's GetDenseTensorShape: follow the first element of each nested list."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


class _Ragged(Exception):
    pass


def to_array(value: Any, dtype: np.dtype, name: str, finite: bool = False) -> np.ndarray:
    """One JSON value (scalar or nested lists) as an array of `dtype`, checked like TF Serving.
    `finite`: the body had no NaN/Infinity token, so a non-finite number is out of range."""
    if dtype == np.dtype(object):
        return _strings(value, name)
    try:
        array = np.asarray(value)
    except ValueError:
        raise _Ragged() from None
    except OverflowError:
        array = np.asarray(value, dtype=object)
    kind = array.dtype.kind
    want = dtype.kind
    refuse_out_of_range(value, array, dtype, dtype_name(dtype), name, finite)
    if want in "fc":
        if kind not in "iuf":
            raise _type_error(value, dtype, name)
        _check_float_range(array, dtype, name)
    elif want in "iu":
        if kind not in "iu":
            raise _type_error(value, dtype, name)
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            bad = array[(array < info.min) | (array > info.max)].flat[0]
            raise invalid_argument(
                f"input '{name}': JSON Value: {bad} is out of range for {dtype_name(dtype)}"
            )
    elif want == "b":
        if kind != "b":
            raise _type_error(value, dtype, name)
    else:
        raise ServingError(
            Code.UNIMPLEMENTED,
            f"input '{name}': conversion of JSON values to type {dtype_name(dtype)} is not "
            "supported",
        )
    return array.astype(dtype, copy=False)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float_range(array: np.ndarray, dtype: np.dtype, name: str) -> None:
    """TF Serving refuses numbers a float/double cannot hold without loss (json_tensor.cc)."""
    target = np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if array.dtype.kind in "iu":
        limit = (1 << np.finfo(target).nmant + 1) - 1
        if array.size and max(abs(int(array.min())), abs(int(array.max()))) > limit:
            bad = array[np.abs(array.astype(np.float64)) > limit].flat[0]
            raise _lossy(bad, target, name)
    elif target == np.float32 and array.size:
        # Two reductions and no copy when every value fits (NaN fails both comparisons):
        # the usual request; only the others are looked at closely.
        if array.max() <= _FLOAT32_MAX and array.min() >= -_FLOAT32_MAX:
            return
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > _FLOAT32_MAX:
            raise _lossy(finite[np.abs(finite) > _FLOAT32_MAX][0], target, name)


def _lossy(value: Any, target: np.dtype, name: str) -> ServingError:
    return invalid_argument(
        f"input '{name}': Cannot convert JSON value: {value} to {dtype_name(target)} without "
        "loss of precision."
    )


def _type_error(value: Any, dtype: np.dtype, name: str) -> ServingError:
    leaf = _first_bad_leaf(value, dtype)
    return invalid_argument(
        f"input '{name}': JSON Value: {short(leaf)} Type: {json_type(leaf)} is not of "
        f"expected type: {dtype_name(dtype)}"
    )


def _first_bad_leaf(value: Any, dtype: np.dtype) -> Any:
    """The first leaf that does not fit `dtype` (only called to word an error)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if dtype.kind in "fc" and isinstance(item, int | float) and not isinstance(item, bool):
            continue
        if dtype.kind in "iu" and isinstance(item, int) and not isinstance(item, bool):
            continue
        if dtype.kind == "b" and isinstance(item, bool):
            continue
        return item
    return value


def _strings(value: Any, name: str) -> np.ndarray:
    """A string tensor: JSON strings as UTF-8 bytes, {"b64": ...} objects decoded."""
    if isinstance(value, dict) and not _is_b64(value):
        raise _b64_error(value, name)
    try:
        array = np.array(value, dtype=object)
    except ValueError:
        raise _Ragged() from None
    flat = array.ravel()
    for i, item in enumerate(flat):  # strings need a Python object each anyway
        if isinstance(item, str):
            flat[i] = item.encode("utf-8")
        elif _is_b64(item):
            try:
                flat[i] = base64.b64decode(item[B64], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument(
                    f"input '{name}': Unable to base64 decode {short(item)}"
                ) from None
        elif isinstance(item, list):
            raise _Ragged()
        elif isinstance(item, dict):
            raise _b64_error(item, name)
        else:
            raise invalid_argument(
                f"input '{name}': JSON Value: {short(item)} Type: {json_type(item)} is not "
                "of expected type: string"
            )
    return array


def _b64_error(value: Any, name: str) -> ServingError:
    return invalid_argument(
        f"input '{name}': JSON Value: {short(value)} not formatted correctly for base64 data: "
        'write bytes as {"b64": "<base64 text>"}'
    )


# ------------------------------------------------------------------ numpy tensors → JSON
def encode_predict(outputs: Mapping[str, np.ndarray], columnar: bool) -> bytes:
    """The reply body: `{"predictions": ...}` for row requests, `{"outputs": ...}` else."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    values = {name: _jsonable(name, np.asarray(array)) for name, array in sorted(outputs.items())}
    if columnar:
        body: Any = values if len(values) > 1 else next(iter(values.values()))
        return dumps({"outputs": body})
    batch = None
    for name, array in outputs.items():
        if np.ndim(array) == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch is not None and batch != len(array):
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {len(array)} expecting: "
                f"{batch}; ask for the columnar format (inputs) to get outputs of any shape"
            )
        batch = len(array)
    if len(values) == 1:
        return dumps({"predictions": next(iter(values.values()))})
    rows = [{name: value[i] for name, value in values.items()} for i in range(batch or 0)]
    return dumps({"predictions": rows})


def _jsonable(name: str, array: np.ndarray) -> Any:
    """An array orjson can write as is, or nested lists where it cannot."""
    if array.dtype.kind in "OSU":
        as_bytes = name.endswith(BYTES_SUFFIX)
        flat = [_string_value(v, as_bytes) for v in array.ravel().tolist()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.dtype.kind == "c":
        raise ServingError(
            Code.UNIMPLEMENTED, f"output '{name}': complex tensors have no JSON form"
        )
    return np.ascontiguousarray(array)


def _string_value(value: Any, as_bytes: bool) -> Any:
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if as_bytes:
        return {B64: base64.b64encode(raw).decode("ascii")}
    return raw.decode("utf-8", "replace")


# --------------------------------------------------------------- classify and regress
def examples_input(doc: Mapping[str, Any], method: str) -> input_pb2.Input:
    """`{"context": {...}, "examples": [{...}, ...]}` as TF Serving's Input (json_tensor.cc)."""
    result = input_pb2.Input()
    finite = not isinstance(doc, TokenDocument)
    context = doc.get("context")
    if context is not None:
        _fill_example(context, result.example_list_with_context.context, finite)
    examples = doc.get("examples")
    if examples is None:
        raise invalid_argument(
            f"When method is {method}, key 'examples' is expected and was not found"
        )
    if not isinstance(examples, list):
        raise invalid_argument("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument("'examples' value is an empty array")
    target = (
        result.example_list_with_context.examples
        if context is not None
        else result.example_list.examples
    )
    for value in examples:
        _fill_example(value, target.add(), finite)
    return result


def _fill_example(value: Any, example: example_pb2.Example, finite: bool) -> None:
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature, finite)
        example.features.feature[name].CopyFrom(feature)


def _add_feature_value(value: Any, name: str, feature: feature_pb2.Feature, finite: bool) -> None:
    kind = feature.WhichOneof("kind")
    if isinstance(value, OutOfRange) or (
        finite and isinstance(value, float) and not math.isfinite(value)
    ):
        raise invalid_argument(
            f"Feature: {name}: JSON Value: {value} is too big to be stored in a double"
        )
    if isinstance(value, bool) or (isinstance(value, int) and not isinstance(value, bool)):
        if kind not in (None, "int64_list"):
            raise _feature_kind_error(name, kind)
        if not -(1 << 63) <= int(value) < (1 << 63):
            what = "uint64" if 0 <= value < (1 << 64) else "out-of-range"
            raise invalid_argument(
                f"Feature: {name} has {what} element {quoted(str(value), 40)}. Only int64 is "
                "supported."
            )
        feature.int64_list.value.append(int(value))
    elif isinstance(value, float):
        if kind not in (None, "float_list"):
            raise _feature_kind_error(name, kind)
        if np.isfinite(value) and abs(value) > np.finfo(np.float32).max:
            raise _lossy(value, np.dtype(np.float32), name)
        feature.float_list.value.append(value)
    elif isinstance(value, str) or _is_b64(value):
        if kind not in (None, "bytes_list"):
            raise _feature_kind_error(name, kind)
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode("utf-8"))
        else:
            try:
                feature.bytes_list.value.append(base64.b64decode(value[B64], validate=True))
            except (binascii.Error, ValueError):
                raise invalid_argument(f"Feature: {name}: Unable to base64 decode") from None
    else:
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
        )


def _feature_kind_error(name: str, kind: str | None) -> ServingError:
    expected = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}
    return invalid_argument(
        f"Unexpected element type in feature: {name} expecting type: "
        f"{expected.get(kind or '', 'UNKNOWN')}"
    )


def encode_classification(result: classification_pb2.ClassificationResult) -> bytes:
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    rows = [[[c.label, c.score] for c in item.classes] for item in result.classifications]
    scores = np.array([c.score for item in result.classifications for c in item.classes])
    if not np.isfinite(scores).all():
        return json.dumps({"results": rows}, allow_nan=True).encode()
    # Scores are float32: write their shortest float32 form, as TF Serving does.
    rows = [[[label, np.float32(score)] for label, score in row] for row in rows]
    return orjson.dumps({"results": rows}, option=_NUMPY_OPTIONS)


def encode_regression(result: regression_pb2.RegressionResult) -> bytes:
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return dumps({"results": np.array([r.value for r in result.regressions], np.float32)})
