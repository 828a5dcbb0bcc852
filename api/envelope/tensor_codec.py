"""TensorProto ⇄ numpy, without per-element Python loops and without trusting the client.

Decoding charges each input's declared shape and dtype to the request's `TensorBudget`
*before* allocating anything, so a request that claims a huge shape with little data is
refused, not materialised; what passes but is big is decoded on a thread
(`decode_inputs_off_loop`).
Encoding uses the typed value fields (`float_val`, ...) as TF Serving does, because
clients written for it read `outputs[...].float_val` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from pyserving.api.envelope.tensor_budget import (
    TensorBudget,
    request_budget,
    shape_text,
)
from pyserving.engine.errors import Code, ServingError, invalid_argument, quoted
from pyserving.engine.off_loop import off_loop_if_big
from pyserving.engine.request_core import PlanOptions
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


def tensor_bytes_within(message_bytes: int) -> int:
    """The default of --max_request_tensor_bytes: twice the message limit. A request that
    spells out its values decodes to about its own size (float_val, tensor_content); only
    small integers in varint fields or strings grow more, and a legitimate request that
    big is rare enough to ask for the flag."""
    return 2 * max(1, message_bytes)


class _Claim(NamedTuple):
    """An input whose size is charged, and whose decoding can then run on any thread."""

    name: str
    proto: tensor_pb2.TensorProto
    dtype: np.dtype
    field: str
    shape: tuple[int, ...]
    elements: int  # not `count`, which would hide tuple.count


def _claim(proto: tensor_pb2.TensorProto, name: str, budget: TensorBudget) -> _Claim:
    if proto.dtype not in _DTYPES:
        raise invalid_argument(
            f"input '{quoted(name)}': unsupported dtype {types_pb2.DataType.Name(proto.dtype)}"
            if proto.dtype in types_pb2.DataType.values()
            else f"input '{quoted(name)}': unknown dtype enum {proto.dtype}"
        )
    dtype, field = _DTYPES[proto.dtype]
    shape = _shape(proto.tensor_shape, name)
    # A string tensor's payload is already in the message; its size is one C call.
    extra = proto.ByteSize() if dtype == np.dtype(object) else 0
    count = budget.claim(name, shape, dtype, extra)
    return _Claim(name, proto, dtype, field, shape, count)


def _decode(claim: _Claim) -> np.ndarray:
    name, proto, dtype, field, shape, count = claim
    if proto.tensor_content:
        return _from_content(proto.tensor_content, dtype, shape, count, name)
    return _from_values(getattr(proto, field), field, dtype, shape, count, name)


def decode(
    proto: tensor_pb2.TensorProto, name: str, budget: TensorBudget | None = None
) -> np.ndarray:
    """One request tensor as a numpy array; INVALID_ARGUMENT naming `name` if malformed,
    RESOURCE_EXHAUSTED if it claims more than `budget` allows (checked before allocating)."""
    return _decode(_claim(proto, name, budget or request_budget(PlanOptions())))


def _claim_all(inputs: Mapping[str, tensor_pb2.TensorProto], budget: TensorBudget) -> list[_Claim]:
    return [_claim(proto, name, budget) for name, proto in inputs.items()]


def _decode_all(claims: list[_Claim]) -> dict[str, np.ndarray]:
    return {claim.name: _decode(claim) for claim in claims}


def decode_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto], budget: TensorBudget | None = None
) -> dict[str, np.ndarray]:
    """Every input, each charged to one budget for the request before any is decoded."""
    return _decode_all(_claim_all(inputs, budget or request_budget(PlanOptions())))


async def decode_inputs_off_loop(
    inputs: Mapping[str, tensor_pb2.TensorProto], budget: TensorBudget
) -> dict[str, np.ndarray]:
    """`decode_inputs`, on a thread when what the inputs claim is big (a short tensor that
    expands, a large array), so other clients' requests are not held up behind it."""
    claims = _claim_all(inputs, budget)
    return await off_loop_if_big(budget.used, _decode_all, claims)


def _shape(shape_proto: tensor_shape_pb2.TensorShapeProto, name: str) -> tuple[int, ...]:
    if shape_proto.unknown_rank:
        raise invalid_argument(
            f"input '{quoted(name)}': tensor_shape has unknown rank; give its dims"
        )
    dims = tuple([d.size for d in shape_proto.dim])
    if dims and min(dims) < 0:
        raise invalid_argument(
            f"input '{quoted(name)}': tensor_shape {shape_text(dims)} has a negative dimension"
        )
    return dims


def _from_content(
    content: bytes, dtype: np.dtype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    if dtype == np.dtype(object):
        raise invalid_argument(
            f"input '{quoted(name)}': string tensors must use string_val, not tensor_content"
        )
    expected = count * dtype.itemsize
    if len(content) != expected:
        raise invalid_argument(
            f"input '{quoted(name)}': tensor_content has {len(content)} bytes but shape "
            f"{shape_text(shape)} of {dtype_name(dtype)} needs {expected}"
        )
    return np.frombuffer(content, dtype=dtype).reshape(shape)


def _from_values(
    values: Any, field: str, dtype: np.dtype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    complex_pairs = dtype.kind == "c"
    given = len(values)  # a C call: the values are counted before any is converted
    if complex_pairs:
        if given % 2:
            raise invalid_argument(f"input '{quoted(name)}': {field} needs real,imag pairs")
        given //= 2
    if given > count:
        raise invalid_argument(
            f"input '{quoted(name)}': {given} values given in {field} but shape "
            f"{shape_text(shape)} holds {count}"
        )
    if given == 0:
        # An empty value list with a non-empty shape: TF fills zeros (or empty strings).
        return np.full(shape, b"" if dtype == np.dtype(object) else 0, dtype=dtype)
    flat = _converted(values, field, dtype, name)
    if given == count:
        return flat.reshape(shape)
    # Fewer values than elements: TF repeats the last value to fill the shape. One
    # allocation and two fills (numpy's fill of numbers runs without the GIL).
    full = np.empty(count, dtype=dtype)
    full[:given] = flat
    full[given:] = flat[-1]
    return full.reshape(shape)


def _converted(values: Any, field: str, dtype: np.dtype, name: str) -> np.ndarray:
    """The given values (no more than the shape holds) as a flat array of `dtype`."""
    if dtype == np.dtype(object):
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
        return flat
    if field == "half_val":
        return np.array(values, dtype=np.uint16).view(np.float16)
    if dtype.kind == "c":
        return np.array(values, dtype=dtype.type(0).real.dtype).view(dtype)
    if field == "int_val" and dtype != np.int32:
        # int8/16 and uint8/16 travel in int32 fields: refuse values that would wrap.
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise invalid_argument(
                f"input '{quoted(name)}': int_val holds values outside {dtype_name(dtype)}'s "
                f"range [{info.min}, {info.max}]"
            )
        return wide.astype(dtype)
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, ValueError) as exc:
        raise invalid_argument(
            f"input '{quoted(name)}': {field} does not fit {dtype_name(dtype)}: {exc}"
        ) from None


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
