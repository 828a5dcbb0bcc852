"""TensorProto ⇄ numpy: values survive, malformed tensors are refused before allocation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from pyserving.api.envelope.tensor_codec import decode, encode
from pyserving.engine.errors import Code, ServingError

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.arange(6, dtype=np.float64).reshape(2, 3),
    np.array([[1, -2], [3, 4]], dtype=np.int32),
    np.array([1, 2, 255], dtype=np.uint8),
    np.array([-(2**40), 2**40], dtype=np.int64),
    np.array([True, False, True]),
    np.array([1.5, -2.25], dtype=np.float16),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
    np.array([b"a", b"\xff\x00", b""], dtype=object),
    np.zeros((0, 3), dtype=np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_through_typed_fields(array: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto()
    encode(array, proto)
    assert not proto.tensor_content  # typed fields, as TF Serving replies
    decoded = decode(proto, "x")
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert decoded.tolist() == array.tolist()
    assert tf.make_ndarray(proto).tolist() == array.tolist()  # what TF Serving clients call


@pytest.mark.parametrize("array", ARRAYS[:8], ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_decodes_what_tf_make_tensor_proto_sends(array: np.ndarray) -> None:
    proto = tf.make_tensor_proto(array)
    decoded = decode(proto, "x")
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_string_tensor_from_tf() -> None:
    proto = tf.make_tensor_proto([b"abc", b"de"])
    assert decode(proto, "s").tolist() == [b"abc", b"de"]


def test_fewer_values_repeat_the_last_as_tf_does() -> None:
    proto = tf.make_tensor_proto(1.5, shape=[2, 2], dtype=tf.float32)
    assert decode(proto, "x").tolist() == tf.make_ndarray(proto).tolist()


def refused(proto: tensor_pb2.TensorProto, **kwargs: int) -> ServingError:
    with pytest.raises(ServingError) as info:
        decode(proto, "images", **kwargs)
    return info.value


def test_content_that_disagrees_with_the_shape() -> None:
    proto = tf.make_tensor_proto(np.zeros((2, 3), np.float32))
    proto.tensor_shape.dim[0].size = 5
    error = refused(proto)
    assert error.code == Code.INVALID_ARGUMENT
    assert "images" in error.message and "needs 60" in error.message


def test_too_many_values() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3])
    proto.tensor_shape.dim.add(size=2)
    assert "3 values" in refused(proto).message


def test_huge_declared_shape_is_refused_unallocated() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    for size in (1 << 30, 1 << 30):
        proto.tensor_shape.dim.add(size=size)
    error = refused(proto)
    assert error.code == Code.RESOURCE_EXHAUSTED and "images" in error.message


def test_empty_tensor_with_huge_other_dimensions_is_refused_not_internal() -> None:
    # Found by tests/reliability's hostile input: numpy raised ValueError on the reshape.
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in (0, 1 << 31, 1 << 31):
        proto.tensor_shape.dim.add(size=size)
    error = refused(proto)
    assert error.code == Code.RESOURCE_EXHAUSTED and "multiply to" in error.message
    small = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in (0, 3):
        small.tensor_shape.dim.add(size=size)
    assert decode(small, "images").shape == (0, 3)  # empty but fine: decoded


@pytest.mark.parametrize(
    ("proto", "fragment"),
    [
        (tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE), "unsupported dtype DT_RESOURCE"),
        (tensor_pb2.TensorProto(dtype=999), "unknown dtype enum 999"),
        (
            tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_content=b"abc"),
            "string_val",
        ),
    ],
)
def test_unusable_tensors(proto: tensor_pb2.TensorProto, fragment: str) -> None:
    error = refused(proto)
    assert error.code == Code.INVALID_ARGUMENT and fragment in error.message


def test_unknown_rank_and_negative_dims() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.unknown_rank = True
    assert "unknown rank" in refused(proto).message
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=-1)
    assert "negative" in refused(proto).message


def test_int_values_that_overflow_the_dtype() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT8, int_val=[1000])
    proto.tensor_shape.dim.add(size=1)
    assert refused(proto).code == Code.INVALID_ARGUMENT


def test_replies_of_one_shape_do_not_share_it() -> None:
    """encode copies its made-once shape (and fill_model_spec its made-once ModelSpec): a
    reply changed after encoding must not change the next reply of that shape or model."""
    from tensorflow_serving.apis import predict_pb2

    from pyserving.api.envelope.request_records import fill_model_spec

    first = predict_pb2.PredictResponse()
    encode(np.zeros((2, 3), np.float32), first.outputs["y"])
    fill_model_spec(first.model_spec, "m", 7, "serving_default")
    first.outputs["y"].tensor_shape.dim[0].size = 99
    first.model_spec.version.value = 99
    second = predict_pb2.PredictResponse()
    encode(np.zeros((2, 3), np.float32), second.outputs["y"])
    fill_model_spec(second.model_spec, "m", 7, "serving_default")
    assert [d.size for d in second.outputs["y"].tensor_shape.dim] == [2, 3]
    assert (second.model_spec.name, second.model_spec.version.value) == ("m", 7)
    assert second.model_spec.signature_name == "serving_default"
