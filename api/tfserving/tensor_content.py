"""--enable_serialization_as_tensor_content: Predict's outputs in `tensor_content`.

TF Serving then answers with Tensor::AsProtoTensorContent (predict_util.cc's
kAsProtoContent) instead of the typed value fields: a numeric tensor's bytes as they lie
in memory (little-endian, row-major), a string tensor as port::EncodeStringList writes it
(every element's length as a varint, then the elements' bytes). `tf.make_ndarray` reads
the numeric ones; the typed fields stay the default (api/envelope/tensor_codec.encode).
"""

from __future__ import annotations

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from pyserving.api.envelope import tensor_codec


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string_list(values: list[bytes]) -> bytes:
    """port::EncodeStringList: the lengths as varints, then the strings."""
    return b"".join(_varint(len(v)) for v in values) + b"".join(values)


def encode(array: np.ndarray, out: tensor_pb2.TensorProto) -> None:
    """Fill `out` as AsProtoTensorContent does: dtype, shape, and tensor_content."""
    array = np.asarray(array)
    if array.dtype == np.dtype(object) or array.dtype.kind in "SU":
        out.dtype = types_pb2.DT_STRING
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in array.ravel().tolist()]
        out.tensor_content = encode_string_list(values)
    else:
        tensor_codec.encode(array.ravel()[:0], out)  # the dtype enum (or the refusal) as usual
        out.tensor_content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    out.tensor_shape.CopyFrom(tensor_codec.shape_proto(array.shape))
