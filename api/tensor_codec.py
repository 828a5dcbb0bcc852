"""TensorProto ⇄ numpy, without per-element Python loops and without trusting the client.

Decoding checks the declared shape against the content *before* allocating anything, so
a request that claims a huge shape with little data is refused, not materialised.
Encoding uses the typed value fields (`float_val`, ...) as TF Serving does, because
clients written for it read `outputs[...].float_val` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from pyserving.engine.errors import Code, ServingError, invalid_argument
from pyserving.engine.request_core import DEFAULT_MAX_ELEMENTS
from pyserving.engine.signature_checks import dtype_name

# DataType → (numpy dtype, typed value field). Strings are object arrays of bytes.
_DTYPES: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_COMPLEX64: (np.dtype(np.complex64), "scomplex_val"),
    types_pb2.DT_COMPLEX128: (np.dtype(np.complex128), "dcomplex_val"),
    types_pb2.DT_STRING: (np.dtype(object), "string_val"),
}
_BY_NUMPY: dict[np.dtype, int] = {
    dtype: enum for enum, (dtype, _) in _DTYPES.items() if dtype != np.dtype(object)
}


def elements_within(message_bytes: int) -> int:
    """The most elements one request tensor may claim when messages are `message_bytes`.

    Every element a message really carries takes at least a byte on the wire (a packed
    bool, a string's length prefix), but a TensorProto may give fewer values than its shape
    holds (the last one repeats), so a tiny message could claim any allocation. Capping the
    claimed elements at the message size limit keeps what a request may allocate
    proportional to what the server agreed to receive."""
    return max(1, message_bytes)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def claimed_elements(shape: tuple[int, ...], name: str, max_elements: int) -> int:
    """The elements a request's (non-negative) shape holds; RESOURCE_EXHAUSTED naming
    `name` when it claims more than `max_elements`, before anything is allocated."""
    count = extent = 1
    for d in shape:
        count *= d
        extent *= max(d, 1)  # numpy refuses [0, 2**31, 2**31] though it holds nothing
    if count > max_elements:
        raise ServingError(
            Code.RESOURCE_EXHAUSTED,
            f"input '{name}': shape {shape_text(shape)} holds {count} elements, "
            f"more than the limit of {max_elements}",
        )
    if extent > max_elements:
        raise ServingError(
            Code.RESOURCE_EXHAUSTED,
            f"input '{name}': shape {shape_text(shape)} has dimensions that multiply to "
            f"{extent} (empty ones aside), more than the limit of {max_elements} elements",
        )
    return count


def decode(
    proto: tensor_pb2.TensorProto, name: str, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> np.ndarray:
    """One request tensor as a numpy array; INVALID_ARGUMENT naming `name` if malformed."""
    if proto.dtype not in _DTYPES:
        raise invalid_argument(
            f"input '{name}': unsupported dtype {types_pb2.DataType.Name(proto.dtype)}"
            if proto.dtype in types_pb2.DataType.values()
            else f"input '{name}': unknown dtype enum {proto.dtype}"
        )
    dtype, field = _DTYPES[proto.dtype]
    shape = _shape(proto.tensor_shape, name)
    count = claimed_elements(shape, name, max_elements)
    if proto.tensor_content:
        return _from_content(proto.tensor_content, dtype, shape, count, name)
    values = getattr(proto, field)
    return _from_values(values, field, dtype, shape, count, name)


def _shape(shape_proto: tensor_shape_pb2.TensorShapeProto, name: str) -> tuple[int, ...]:
    if shape_proto.unknown_rank:
        raise invalid_argument(f"input '{name}': tensor_shape has unknown rank; give its dims")
    dims = tuple([d.size for d in shape_proto.dim])
    if dims and min(dims) < 0:
        raise invalid_argument(
            f"input '{name}': tensor_shape {shape_text(dims)} has a negative dimension"
        )
    return dims


def _from_content(
    content: bytes, dtype: np.dtype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    if dtype == np.dtype(object):
        raise invalid_argument(
            f"input '{name}': string tensors must use string_val, not tensor_content"
        )
    expected = count * dtype.itemsize
    if len(content) != expected:
        raise invalid_argument(
            f"input '{name}': tensor_content has {len(content)} bytes but shape "
            f"{shape_text(shape)} of {dtype_name(dtype)} needs {expected}"
        )
    return np.frombuffer(content, dtype=dtype).reshape(shape)


def _from_values(
    values: object, field: str, dtype: np.dtype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    if dtype == np.dtype(object):
        flat = np.empty(len(values), dtype=object)  # type: ignore[arg-type]
        flat[:] = list(values)  # type: ignore[call-overload]
    elif field == "half_val":
        flat = np.array(values, dtype=np.uint16).view(np.float16)
    elif dtype.kind == "c":
        pairs = np.array(values, dtype=dtype.type(0).real.dtype)
        if pairs.size % 2:
            raise invalid_argument(f"input '{name}': {field} needs real,imag pairs")
        flat = pairs.view(dtype)
    elif field == "int_val" and dtype != np.int32:
        # int8/16 and uint8/16 travel in int32 fields: refuse values that would wrap.
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise invalid_argument(
                f"input '{name}': int_val holds values outside {dtype_name(dtype)}'s range "
                f"[{info.min}, {info.max}]"
            )
        flat = wide.astype(dtype)
    else:
        try:
            flat = np.array(values, dtype=dtype)
        except (OverflowError, ValueError) as exc:
            raise invalid_argument(
                f"input '{name}': {field} does not fit {dtype_name(dtype)}: {exc}"
            ) from None
    n = flat.size
    if n == count:
        return flat.reshape(shape)
    if n > count:
        raise invalid_argument(
            f"input '{name}': {n} values given in {field} but shape {shape_text(shape)} "
            f"holds {count}"
        )
    if n == 0:
        # An empty value list with a non-empty shape: TF fills zeros (or empty strings).
        return np.full(shape, b"" if dtype == np.dtype(object) else 0, dtype=dtype)
    # Fewer values than elements: TF repeats the last value to fill the shape.
    return np.concatenate([flat, np.repeat(flat[-1:], count - n)]).reshape(shape)


def decode_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto], max_elements: int = DEFAULT_MAX_ELEMENTS
) -> dict[str, np.ndarray]:
    return {name: decode(proto, name, max_elements) for name, proto in inputs.items()}


def encode(array: np.ndarray, out: tensor_pb2.TensorProto) -> None:
    """Fill `out` from a numpy array, with the typed value field TF Serving uses."""
    array = np.asarray(array)
    enum = _BY_NUMPY.get(array.dtype)
    if enum is not None:
        out.dtype = enum
        field = _DTYPES[enum][1]
        flat = array.ravel()
        if field == "half_val":
            flat = flat.view(np.uint16)
        elif array.dtype.kind == "c":
            flat = flat.view(array.real.dtype)
        getattr(out, field).extend(flat.tolist())
    elif array.dtype == np.dtype(object) or array.dtype.kind in "SU":
        out.dtype = types_pb2.DT_STRING
        out.string_val.extend(
            v.encode() if isinstance(v, str) else bytes(v) for v in array.ravel().tolist()
        )
    else:
        raise ServingError(Code.INTERNAL, f"cannot encode output of dtype {array.dtype}")
    out.tensor_shape.CopyFrom(shape_proto(array.shape))


@functools.lru_cache(maxsize=256)
def shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    """The TensorShapeProto of `shape`, made once per shape: replies repeat a few shapes,
    and copying a made one costs a C call where adding each dim costs one per dim.
    Shared, so never to be changed: callers CopyFrom it."""
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
    )
