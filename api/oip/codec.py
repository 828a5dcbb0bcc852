"""Open Inference Protocol (KServe v2) tensors ⇄ numpy, for gRPC and REST alike.

Datatypes are the protocol's names (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64,
BYTES, and BF16 from TensorFlow's ml_dtypes); BYTES is TensorFlow's DT_STRING (object
arrays of bytes). A tensor arrives as typed `contents`, as raw little-endian bytes
(`raw_input_contents` over gRPC, the binary-data extension over HTTP; BYTES elements each
a 4-byte little-endian length, then the bytes, as Triton lays them out), or as REST JSON
`data` (flat in row-major order, or nested). Every form is checked against the declared
shape before anything is allocated: the element count must match exactly (the protocol
has no TensorProto-style "repeat the last value"), and a shape claiming more elements
than the request size limit allows is refused, as TF Serving's decoder does.

Answers go back as Triton sends them: gRPC in `raw_output_contents` (what tritonclient
reads fastest), or typed `contents` when every requested output asks `binary_data:
false`; REST as JSON `data`, or binary after the JSON header where asked
(`binary_data` per output, `binary_data_output` for the whole request).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyserving.adapters.protos import grpc_service_pb2
from pyserving.api.envelope import json_body
from pyserving.api.envelope.tensor_budget import TensorBudget, request_budget, shape_text
from pyserving.engine.errors import invalid_argument, quoted
from pyserving.engine.request_core import PlanOptions
from pyserving.engine.servable import Signature, TensorSpec
from pyserving.engine.signature_checks import shape_fits

# The protocol's datatype names → numpy dtypes (byte order: little-endian on the wire).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
try:  # TensorFlow's bfloat16 is ml_dtypes' (a TensorFlow dependency)
    import ml_dtypes

    DATATYPES["BF16"] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - TensorFlow always brings it
    pass

_BY_DTYPE: dict[np.dtype, str] = {dtype: name for name, dtype in DATATYPES.items()}

# The typed `InferTensorContents` field of each datatype; FP16 and BF16 have none (raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH = struct.Struct("<I")


def numpy_dtype(datatype: str, name: str) -> np.dtype:
    """The dtype of a protocol datatype; INVALID_ARGUMENT naming the tensor if unknown."""
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise invalid_argument(
            f"input '{name}': unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        )
    return dtype


def datatype_of(dtype: np.dtype) -> str:
    """The protocol's name for a numpy dtype; strings of any kind are BYTES. A dtype the
    protocol has no name for (complex) is named by numpy, upper case."""
    if dtype.kind in "OSU":
        return "BYTES"
    return _BY_DTYPE.get(dtype, dtype.name.upper())


def metadata_shape(spec: TensorSpec) -> list[int]:
    """A signature tensor's shape as the protocol shows it: -1 for an unknown dimension,
    and [-1] for an unknown rank (the protocol cannot say "any rank")."""
    if spec.shape is None:
        return [-1]
    return [-1 if d is None else int(d) for d in spec.shape]


def request_shape(
    dims: Iterable[int], name: str, dtype: np.dtype, budget: TensorBudget, extra: int = 0
) -> tuple[tuple[int, ...], int]:
    """A request tensor's declared shape and element count, charged to the request's
    budget (`extra`: bytes beyond the elements, e.g. BYTES payload) before allocating."""
    shape = tuple(int(d) for d in dims)
    if shape and min(shape) < 0:
        raise invalid_argument(
            f"input '{quoted(name)}': shape {shape_text(shape)} has a negative dimension; a "
            "request gives every dimension's size"
        )
    return shape, budget.claim(name, shape, dtype, extra)


# ------------------------------------------------------------------ raw bytes
def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES elements in row-major order, each a 4-byte little-endian length, then itself."""
    parts = []
    for value in np.asarray(array, dtype=object).ravel().tolist():
        item = value.encode() if isinstance(value, str) else bytes(value)
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, count: int, name: str) -> np.ndarray:
    """The inverse of `serialize_bytes`; exactly `count` elements that use every byte."""
    view = memoryview(raw)
    if count * _LENGTH.size > len(view):  # checked before the array is allocated
        raise invalid_argument(
            f"input '{quoted(name)}': {len(view)} bytes of BYTES data cannot hold {count} "
            f"elements (each is a {_LENGTH.size}-byte little-endian length, then its bytes)"
        )
    values = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise invalid_argument(
                f"input '{name}': BYTES data ends after {i} of {count} elements (each element "
                "is a 4-byte little-endian length followed by that many bytes)"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise invalid_argument(
                f"input '{name}': BYTES element {i} claims {length} bytes but only "
                f"{len(view) - offset} remain"
            )
        values[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise invalid_argument(
            f"input '{name}': BYTES data has {len(view) - offset} bytes left over after "
            f"{count} elements"
        )
    return values


def from_raw(
    name: str, datatype: str, dims: Iterable[int], raw: bytes | memoryview, budget: TensorBudget
) -> np.ndarray:
    """A tensor from its raw little-endian bytes; the byte count must fit the shape."""
    dtype = numpy_dtype(datatype, name)
    extra = len(raw) if datatype == "BYTES" else 0
    shape, count = request_shape(dims, name, dtype, budget, extra)
    if datatype == "BYTES":
        return deserialize_bytes(raw, count, name).reshape(shape)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise invalid_argument(
            f"input '{name}': {len(raw)} bytes of raw data but shape {shape_text(shape)} of "
            f"{datatype} needs {expected}"
        )
    if datatype == "BOOL":
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape) != 0
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """An output's raw bytes as the protocol lays them out (little-endian, BYTES prefixed)."""
    if array.dtype.kind in "OSU":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


# ------------------------------------------------------------------ typed contents
def from_contents(
    name: str,
    datatype: str,
    dims: Iterable[int],
    contents: grpc_service_pb2.InferTensorContents,
    budget: TensorBudget,
) -> np.ndarray:
    """A tensor from its typed `contents`: the datatype's field, exactly filling the shape."""
    dtype = numpy_dtype(datatype, name)
    extra = contents.ByteSize() if datatype == "BYTES" else 0
    shape, count = request_shape(dims, name, dtype, budget, extra)
    wanted = CONTENTS_FIELD.get(datatype)
    for descriptor, _ in contents.ListFields():
        if descriptor.name != wanted:
            hint = (
                f"put them in {wanted}"
                if wanted
                else f"{datatype} has no typed contents field: send it in raw_input_contents"
            )
            raise invalid_argument(
                f"input '{name}' has datatype {datatype} but its values are in "
                f"{descriptor.name}; {hint}"
            )
    if wanted is None:
        if count:
            raise invalid_argument(
                f"input '{name}': {datatype} has no typed contents field: send it in "
                "raw_input_contents"
            )
        return np.empty(shape, dtype=dtype)
    values = getattr(contents, wanted)
    if len(values) != count:
        raise invalid_argument(
            f"input '{name}': {len(values)} values in {wanted} but shape {shape_text(shape)} "
            f"holds {count}"
        )
    if datatype == "BYTES":
        flat = np.empty(count, dtype=object)
        flat[:] = list(values)
    elif wanted in ("int_contents", "uint_contents") and dtype.itemsize < 4:
        flat = _narrowed(np.array(values, dtype=np.int64), dtype, name, wanted)
    else:
        flat = np.array(values, dtype=dtype)
    return flat.reshape(shape)


def _narrowed(wide: np.ndarray, dtype: np.dtype, name: str, where: str) -> np.ndarray:
    """INT8/16 and UINT8/16 travel in 32-bit fields: refuse values that would wrap."""
    info = np.iinfo(dtype)
    if wide.size and (wide.min() < info.min or wide.max() > info.max):
        raise invalid_argument(
            f"input '{name}': {where} holds values outside {datatype_of(dtype)}'s range "
            f"[{info.min}, {info.max}]"
        )
    return wide.astype(dtype)


def to_contents(array: np.ndarray, out: grpc_service_pb2.InferTensorContents, name: str) -> None:
    """An output in its datatype's typed field; FP16/BF16 have none (INVALID_ARGUMENT)."""
    datatype = datatype_of(array.dtype)
    wanted = CONTENTS_FIELD.get(datatype)
    if wanted is None:
        raise invalid_argument(
            f"output '{name}' is {datatype}, which has no typed contents field: ask for it "
            "without binary_data false to get raw_output_contents"
        )
    flat = array.ravel()
    if datatype == "BYTES":
        out.bytes_contents.extend(v.encode() if isinstance(v, str) else bytes(v) for v in flat)
    else:
        getattr(out, wanted).extend(flat.tolist())


# ------------------------------------------------------------------ gRPC messages
def decode_infer_inputs(
    request: grpc_service_pb2.ModelInferRequest, budget: TensorBudget | None = None
) -> dict[str, np.ndarray]:
    """A ModelInferRequest's inputs, from `raw_input_contents` (one per input, in order) or
    each input's typed `contents`; a name given twice is refused."""
    raw = request.raw_input_contents
    inputs = request.inputs
    if raw and len(raw) != len(inputs):
        raise invalid_argument(
            f"raw_input_contents has {len(raw)} entries but the request has {len(inputs)} "
            "inputs: give one raw entry per input, in the order of inputs"
        )
    budget = budget or request_budget(PlanOptions())
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        name = tensor.name
        if name in arrays:
            raise invalid_argument(f"input '{name}' is given more than once")
        if raw:
            if tensor.HasField("contents"):
                raise invalid_argument(
                    f"input '{name}' has contents while the request uses raw_input_contents: "
                    "use one form for every input"
                )
            arrays[name] = from_raw(name, tensor.datatype, tensor.shape, raw[i], budget)
        else:
            arrays[name] = from_contents(
                name, tensor.datatype, tensor.shape, tensor.contents, budget
            )
    return arrays


def encode_infer_outputs(
    response: grpc_service_pb2.ModelInferResponse,
    outputs: Mapping[str, np.ndarray],
    order: Sequence[str],
    raw: bool = True,
) -> None:
    """Fill `response.outputs` (in `order`) with names, datatypes, shapes and the data."""
    for name in order:
        array = np.asarray(outputs[name])
        tensor = response.outputs.add(name=name, datatype=datatype_of(array.dtype))
        tensor.shape.extend(array.shape)
        if raw:
            response.raw_output_contents.append(to_raw(array))
        else:
            to_contents(array, tensor.contents, name)


def parameter_value(parameter: grpc_service_pb2.InferParameter) -> Any:
    """An InferParameter's value, whichever member of its oneof is set (None if none)."""
    which = parameter.WhichOneof("parameter_choice")
    return None if which is None else getattr(parameter, which)


# ------------------------------------------------------------------ signature checks
def check_against_signature(
    model: str, signature: Signature, inputs: Mapping[str, np.ndarray]
) -> None:
    """Each input's datatype and shape against the signature, as Triton checks them against
    the model's config, in the protocol's words (the names were checked by the core)."""
    for alias, array in inputs.items():
        spec = signature.inputs.get(alias)
        if spec is None:
            continue
        given, expected = datatype_of(array.dtype), datatype_of(spec.dtype)
        if given != expected:
            raise invalid_argument(
                f"input '{alias}' has datatype {given} but model '{model}' (signature "
                f"'{signature.name}') expects {expected}"
            )
        if not shape_fits(spec, array.shape):
            raise invalid_argument(
                f"input '{alias}' has shape {shape_text(array.shape)} but model '{model}' "
                f"(signature '{signature.name}') expects {spec.shape_text()}"
            )


# ------------------------------------------------------------------ REST JSON
@dataclass(frozen=True)
class RestOutput:
    name: str
    binary: bool | None  # its binary_data parameter; None: the request's binary_data_output


@dataclass
class RestInferRequest:
    """A decoded `POST .../infer` body."""

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: list[RestOutput] | None  # None: every output of the signature
    binary_output: bool = False  # the request's binary_data_output parameter

    @property
    def wanted(self) -> list[str]:
        """The output filter: the requested outputs' names (empty: all of them)."""
        return [output.name for output in self.outputs or ()]

    def binary_outputs(self, names: Iterable[str]) -> set[str]:
        """Which of the answer's outputs go as binary data after the JSON header."""
        if self.outputs is None:
            return set(names) if self.binary_output else set()
        return {
            o.name for o in self.outputs if o.binary or (o.binary is None and self.binary_output)
        }


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_argument(f"{what} must be a JSON object, not {json_body.json_type(value)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_argument(f"{what} must be a JSON array, not {json_body.json_type(value)}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise invalid_argument(f"{what} must be a string, not {json_body.json_type(value)}")
    return value


def _bool_parameter(parameters: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid_argument(f"{what} parameter {key} must be true or false")
    return value


def parse_infer_body(
    body: bytes, header_length: str | None, budget: TensorBudget | None = None
) -> RestInferRequest:
    """An infer body: JSON, or (with `Inference-Header-Content-Length`) a JSON header
    followed by the binary data of the inputs with a `binary_data_size`, in their order."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 <= length <= len(body):
            raise invalid_argument(
                f"Inference-Header-Content-Length {header_length!r} is not a length within "
                f"the {len(body)}-byte body"
            )
        binary = memoryview(body)[length:]
        body = body[:length]
    doc = json_body.parse_body(body)
    finite = not isinstance(doc, json_body.TokenDocument)
    budget = budget or request_budget(PlanOptions())
    parameters = _object(doc.get("parameters", {}), "parameters")
    request_id = doc.get("id")
    if request_id is not None:
        request_id = _string(request_id, "id")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, entry in enumerate(_list(doc.get("inputs"), "inputs")):
        entry = _object(entry, f"inputs[{i}]")
        name = _string(entry.get("name"), f"inputs[{i}].name")
        if name in inputs:
            raise invalid_argument(f"input '{name}' is given more than once")
        datatype = _string(entry.get("datatype"), f"input '{name}': datatype")
        dims = _list(entry.get("shape"), f"input '{name}': shape")
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise invalid_argument(f"input '{name}': shape must be a list of integers")
        size = _object(entry.get("parameters", {}), f"input '{name}': parameters").get(
            "binary_data_size"
        )
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise invalid_argument(f"input '{name}': binary_data_size must be a byte count")
            if offset + size > len(binary):
                raise invalid_argument(
                    f"input '{name}': binary_data_size {size} runs past the {len(binary)} "
                    "bytes of binary data after the JSON header (is "
                    "Inference-Header-Content-Length set?)"
                )
            inputs[name] = from_raw(name, datatype, dims, binary[offset : offset + size], budget)
            offset += size
        elif "data" in entry:
            inputs[name] = from_json(name, datatype, dims, entry["data"], budget, finite)
        else:
            raise invalid_argument(f"input '{name}' has neither data nor binary_data_size")
    if offset != len(binary):
        raise invalid_argument(
            f"{len(binary) - offset} bytes of binary data after the JSON header belong to no "
            "input's binary_data_size"
        )
    outputs = None
    if "outputs" in doc:
        outputs = []
        for i, entry in enumerate(_list(doc["outputs"], "outputs")):
            entry = _object(entry, f"outputs[{i}]")
            name = _string(entry.get("name"), f"outputs[{i}].name")
            options = _object(entry.get("parameters", {}), f"output '{name}': parameters")
            wants = _bool_parameter(options, "binary_data", f"output '{name}'")
            outputs.append(RestOutput(name, wants))
    binary_output = _bool_parameter(parameters, "binary_data_output", "the request's")
    return RestInferRequest(request_id, parameters, inputs, outputs, bool(binary_output))


# JSON value kinds (numpy's kind of the parsed list) each datatype accepts.
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def from_json(
    name: str,
    datatype: str,
    dims: Sequence[int],
    data: Any,
    budget: TensorBudget,
    finite: bool = False,
) -> np.ndarray:
    """A tensor from JSON `data` (flat row-major, or nested): booleans for BOOL, integers
    for the integer types (in range), numbers for FP*, UTF-8 strings for BYTES. `finite`:
    the body had no NaN/Infinity token (see api/envelope/json_body.py), so a non-finite number is a
    literal out of range."""
    dtype = numpy_dtype(datatype, name)
    shape, count = request_shape(dims, name, dtype, budget)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _json_strings(data, name)
    else:
        try:
            parsed = np.asarray(data)
        except ValueError:
            raise invalid_argument(f"input '{name}': data is ragged (nested lists differ)") from (
                None
            )
        json_body.refuse_out_of_range(data, parsed, dtype, datatype, name, finite)
        if parsed.size and parsed.dtype.kind not in _JSON_KINDS.get(dtype.kind, ""):
            raise invalid_argument(
                f"input '{name}' has datatype {datatype} but its data holds "
                f"{_json_kind(parsed.dtype)} values"
            )
        parsed = parsed.ravel()
        if dtype.kind in "iu" and parsed.size:
            flat = _narrowed_json(parsed, dtype, name)
        else:
            with np.errstate(over="ignore"):  # an overflow is refused just below
                flat = parsed.astype(dtype)
            if dtype.kind == "f" and parsed.size:
                _check_finite_fits(parsed, flat, datatype, name)
    if flat.size != count:
        raise invalid_argument(
            f"input '{name}': data holds {flat.size} values but shape {shape_text(shape)} "
            f"holds {count}"
        )
    return flat.reshape(shape)


def _check_finite_fits(parsed: np.ndarray, flat: np.ndarray, datatype: str, name: str) -> None:
    """A finite number too big for FP16/FP32 must not arrive as Infinity."""
    overflowed = np.isinf(flat) & np.isfinite(parsed)
    if overflowed.any():
        raise invalid_argument(
            f"input '{quoted(name)}': JSON Value: {parsed[overflowed][0]} is out of range for "
            f"{datatype}"
        )


def _json_kind(dtype: np.dtype) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "number", "U": "string"}.get(
        dtype.kind, "mixed or non-numeric"
    )


def _narrowed_json(parsed: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    if parsed.dtype.kind not in "iu":  # an integer too big for int64/uint64 parses as object
        raise invalid_argument(f"input '{name}': data holds integers out of range")
    info = np.iinfo(dtype)
    if int(parsed.min()) < info.min or int(parsed.max()) > info.max:
        raise invalid_argument(
            f"input '{name}': data holds values outside {datatype_of(dtype)}'s range "
            f"[{info.min}, {info.max}]"
        )
    return parsed.astype(dtype)


def _json_strings(data: list[Any], name: str) -> np.ndarray:
    values: list[bytes] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            if not isinstance(value, str):
                raise invalid_argument(
                    f"input '{name}' has datatype BYTES but its data holds "
                    f"{json_body.json_type(value)} values; send strings"
                )
            values.append(value.encode())
        else:
            stack.pop()
    flat = np.empty(len(values), dtype=object)
    flat[:] = values
    return flat


def to_json_data(array: np.ndarray, name: str) -> Any:
    """An output's JSON `data`: flat, row-major (a numpy array orjson writes as a list, or
    a list of UTF-8 strings for BYTES)."""
    flat = array.ravel()
    if array.dtype.kind in "OSU":
        try:
            return [v.decode() if isinstance(v, bytes) else str(v) for v in flat.tolist()]
        except UnicodeDecodeError:
            raise invalid_argument(
                f"output '{name}' holds bytes that are not UTF-8: ask for it with binary_data true"
            ) from None
    if array.dtype == DATATYPES.get("BF16"):
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat)


def encode_infer_body(
    model: str,
    version: int,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    order: Sequence[str],
    binary: set[str],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The infer reply: (body, JSON header length when binary data follows it, else None);
    `parameters` are the response's own (the answering version's fingerprint)."""
    tensors = []
    blobs = []
    for name in order:
        array = np.asarray(outputs[name])
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if name in binary:
            blob = to_raw(array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = to_json_data(array, name)
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["outputs"] = tensors
    header = json_body.dumps(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
