"""What one request's decoded tensors may take, checked before anything is allocated.

A request says how big its tensors are (a shape, a dtype) before it says what is in
them, and TensorFlow's TensorProto lets it give fewer values than the shape holds (the
last one repeats). So a 66-byte Predict can claim a gigabyte, and a 32-byte ModelInfer
can claim 2^26 BYTES elements. Every codec (TF Serving's gRPC and REST, the Open
Inference Protocol's gRPC, JSON and binary forms) therefore charges each input's claim to
one `TensorBudget` per request before decoding it:

- elements per tensor: at most `max_elements` (the message limit: each element a
  request really carries takes at least a byte on the wire);
- bytes for the whole request: at most `max_bytes`, counted per dtype (itemsize), with
  string elements counted as `OBJECT_ELEMENT_BYTES` each plus their length, because each
  is a Python object whose making holds the GIL.

Past either: RESOURCE_EXHAUSTED naming the input, its claimed size and the limit.

Work on a request that passes but is big (expanding a short tensor, building a large
array, parsing a large JSON body) runs on a thread (`engine.off_loop.off_loop_if_big`),
so the event loop that serves every other client keeps turning.
"""

from __future__ import annotations

import numpy as np

from pyserving.engine.errors import Code, ServingError, quoted
from pyserving.engine.request_core import PlanOptions

# A string element: an 8-byte pointer and a Python bytes object (33 bytes before its
# data), rounded up. Making 2^24 of them took 346 ms with the GIL held (np.full, dev VM),
# so strings are charged for their objects, not only for their pointers.
OBJECT_ELEMENT_BYTES = 64


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def element_bytes(dtype: np.dtype) -> int:
    """What one element of `dtype` is charged: its itemsize, or a string's object."""
    return OBJECT_ELEMENT_BYTES if dtype.kind in "OSU" else dtype.itemsize


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
            f"input '{quoted(name)}': shape {shape_text(shape)} holds {count} elements, "
            f"more than the limit of {max_elements} (one a byte of --grpc_max_message_bytes)",
        )
    if extent > max_elements:
        raise ServingError(
            Code.RESOURCE_EXHAUSTED,
            f"input '{quoted(name)}': shape {shape_text(shape)} has dimensions that multiply "
            f"to {extent} (empty ones aside), more than the limit of {max_elements} elements "
            "(one a byte of --grpc_max_message_bytes)",
        )
    return count


def request_budget(options: PlanOptions) -> TensorBudget:
    """A fresh account for one request, under the server's limits."""
    return TensorBudget(options.max_elements, options.max_tensor_bytes)


class TensorBudget:
    """One request's account: each input's claim is charged before it is decoded."""

    __slots__ = ("max_bytes", "max_elements", "used")

    def __init__(self, max_elements: int, max_bytes: int) -> None:
        self.max_elements = max_elements
        self.max_bytes = max_bytes
        self.used = 0

    def claim(self, name: str, shape: tuple[int, ...], dtype: np.dtype, extra: int = 0) -> int:
        """Charge an input of `shape` and `dtype` (plus `extra` bytes, e.g. its strings'
        payload); its element count, or RESOURCE_EXHAUSTED past a limit."""
        count = claimed_elements(shape, name, self.max_elements)
        size = count * element_bytes(dtype) + extra
        self.used += size
        if self.used > self.max_bytes:
            whole = "" if self.used == size else f" (this request's tensors: {self.used})"
            raise ServingError(
                Code.RESOURCE_EXHAUSTED,
                f"input '{quoted(name)}': shape {shape_text(shape)} of {dtype_label(dtype)} "
                f"would take {size} bytes{whole}, more than the limit of {self.max_bytes} "
                "bytes a request's tensors may take (--max_request_tensor_bytes); send fewer "
                "or smaller inputs per request",
            )
        return count


def dtype_label(dtype: np.dtype) -> str:
    return "strings" if dtype.kind in "OSU" else dtype.name
