"""The Open Inference Protocol codec: every datatype both ways (typed contents, raw bytes,
REST JSON), BYTES' length-prefixed layout as tritonclient writes it, and contents that do
not fill their declared shape refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.utils as triton_utils

from pyserving.adapters.protos import grpc_service_pb2
from pyserving.api.envelope.tensor_budget import TensorBudget
from pyserving.api.oip import codec as oip_codec
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec

NUMERIC = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]


def budget() -> TensorBudget:
    """A fresh account per call: 2^20 elements a tensor, 1 GiB a request."""
    return TensorBudget(1 << 20, 1 << 30)


def sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    dtype = oip_codec.DATATYPES[datatype]
    count = int(np.prod(shape))
    if datatype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    if datatype == "BYTES":
        values = np.array([f"v{i}\x00é".encode() for i in range(count)], dtype=object)
        return values.reshape(shape)
    if dtype.kind == "u":
        top = np.iinfo(dtype).max
        return np.array([top - i for i in range(count)], dtype=dtype).reshape(shape)
    if dtype.kind == "i":
        low = np.iinfo(dtype).min
        return np.array([low + i for i in range(count)], dtype=dtype).reshape(shape)
    return (np.arange(count) / 7 - 0.5).astype(dtype).reshape(shape)


def refused(call, *words: str, code: Code = Code.INVALID_ARGUMENT) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call()
    assert caught.value.code == code, caught.value
    for word in words:
        assert word in caught.value.message, caught.value.message
    return caught.value


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES", "BF16"])
def test_datatype_names_match_tritonclient(datatype: str) -> None:
    dtype = oip_codec.DATATYPES[datatype]
    assert oip_codec.datatype_of(dtype) == datatype
    if datatype not in ("BYTES", "BF16"):
        assert triton_utils.np_to_triton_dtype(dtype) == datatype
        assert np.dtype(triton_utils.triton_to_np_dtype(datatype)) == dtype


@pytest.mark.parametrize("datatype", [*(d for d in NUMERIC if d != "FP16"), "BYTES"])
def test_typed_contents_both_ways(datatype: str) -> None:
    array = sample(datatype)
    contents = grpc_service_pb2.InferTensorContents()
    oip_codec.to_contents(array, contents, "x")
    assert [f.name for f, _ in contents.ListFields()] == [oip_codec.CONTENTS_FIELD[datatype]]
    back = oip_codec.from_contents("x", datatype, array.shape, contents, budget())
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tolist() == array.tolist()


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES", "BF16"])
def test_raw_contents_both_ways(datatype: str) -> None:
    array = sample(datatype)
    raw = oip_codec.to_raw(array)
    if datatype == "BYTES":
        assert raw == triton_utils.serialize_byte_tensor(array).item()
    elif datatype != "BF16":
        assert raw == array.astype(array.dtype.newbyteorder("<")).tobytes()
    back = oip_codec.from_raw("x", datatype, array.shape, raw, budget())
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tolist() == array.tolist()


def test_raw_is_little_endian() -> None:
    raw = oip_codec.to_raw(np.array([1], dtype=">u4"))
    assert raw == b"\x01\x00\x00\x00"
    assert oip_codec.from_raw("x", "UINT32", [1], raw, budget()).tolist() == [1]


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_json_both_ways(datatype: str) -> None:
    array = sample(datatype)
    data = oip_codec.to_json_data(array, "x")
    data = data.tolist() if isinstance(data, np.ndarray) else data
    back = oip_codec.from_json("x", datatype, list(array.shape), data, budget())
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tolist() == array.tolist()
    rows = np.array(data, dtype=object).reshape(array.shape).tolist()  # nested JSON
    nested = oip_codec.from_json("x", datatype, list(array.shape), rows, budget())
    assert nested.tolist() == array.tolist()


def test_mismatched_sizes_are_refused() -> None:
    contents = grpc_service_pb2.InferTensorContents(fp32_contents=[1.0, 2.0, 3.0])
    refused(
        lambda: oip_codec.from_contents("x", "FP32", [2, 2], contents, budget()),
        "input 'x'",
        "3 values in fp32_contents",
        "[2,2]",
    )
    refused(
        lambda: oip_codec.from_raw("x", "FP32", [2, 2], b"\x00" * 15, budget()),
        "input 'x'",
        "15 bytes",
        "needs 16",
    )
    refused(
        lambda: oip_codec.from_json("x", "INT32", [3], [1, 2], budget()),
        "input 'x'",
        "2 values",
        "[3]",
    )


def test_bytes_layout_is_checked() -> None:
    good = triton_utils.serialize_byte_tensor(np.array([b"ab", b"c"], dtype=object)).item()
    refused(lambda: oip_codec.from_raw("s", "BYTES", [3], good, budget()), "cannot hold 3")
    padded = good + b"\x09\x00"  # room for 3 length prefixes, but the third is cut short
    refused(lambda: oip_codec.from_raw("s", "BYTES", [3], padded, budget()), "ends after 2 of 3")
    refused(lambda: oip_codec.from_raw("s", "BYTES", [1], good, budget()), "left over")
    refused(
        lambda: oip_codec.from_raw("s", "BYTES", [1], b"\xff\x00\x00\x00ab", budget()),
        "claims 255 bytes",
    )


def test_wrong_contents_field_and_datatype() -> None:
    contents = grpc_service_pb2.InferTensorContents(int_contents=[1, 2])
    refused(
        lambda: oip_codec.from_contents("x", "FP32", [2], contents, budget()),
        "datatype FP32",
        "int_contents",
        "fp32_contents",
    )
    fp16 = grpc_service_pb2.InferTensorContents(fp32_contents=[1.0])
    refused(lambda: oip_codec.from_contents("h", "FP16", [1], fp16, budget()), "raw_input_contents")
    refused(lambda: oip_codec.numpy_dtype("FP8", "x"), "unknown datatype 'FP8'", "FP32")
    narrow = grpc_service_pb2.InferTensorContents(int_contents=[1000])
    refused(lambda: oip_codec.from_contents("x", "INT8", [1], narrow, budget()), "INT8's range")
    refused(lambda: oip_codec.from_json("x", "INT32", [1], [1.5], budget()), "number values")
    refused(lambda: oip_codec.from_json("x", "UINT8", [1], [256], budget()), "UINT8's range")
    refused(lambda: oip_codec.from_json("x", "BYTES", [1], [1], budget()), "send strings")
    refused(lambda: oip_codec.from_json("x", "BOOL", [1], [1], budget()), "integer values")


def test_shapes_are_checked_before_allocating() -> None:
    refused(lambda: oip_codec.from_raw("x", "FP32", [-1, 2], b"", budget()), "negative dimension")
    refused(
        lambda: oip_codec.from_raw("x", "FP32", [1 << 40], b"", budget()),
        "input 'x'",
        "more than the limit",
        code=Code.RESOURCE_EXHAUSTED,
    )


def grpc_request(arrays: dict[str, np.ndarray], raw: bool) -> grpc_service_pb2.ModelInferRequest:
    request = grpc_service_pb2.ModelInferRequest(model_name="m")
    for name, array in arrays.items():
        tensor = request.inputs.add(
            name=name, datatype=oip_codec.datatype_of(array.dtype), shape=array.shape
        )
        if raw:
            request.raw_input_contents.append(oip_codec.to_raw(array))
        else:
            oip_codec.to_contents(array, tensor.contents, name)
    return request


@pytest.mark.parametrize("raw", [True, False])
def test_grpc_request_and_response(raw: bool) -> None:
    arrays = {"a": sample("FP32"), "b": sample("BYTES", (3,))}
    decoded = oip_codec.decode_infer_inputs(grpc_request(arrays, raw), budget())
    assert {k: v.tolist() for k, v in decoded.items()} == {k: v.tolist() for k, v in arrays.items()}
    response = grpc_service_pb2.ModelInferResponse()
    oip_codec.encode_infer_outputs(response, arrays, ["b", "a"], raw)
    assert [o.name for o in response.outputs] == ["b", "a"]
    assert [list(o.shape) for o in response.outputs] == [[3], [2, 3]]
    assert len(response.raw_output_contents) == (2 if raw else 0)


def test_grpc_request_mixing_forms_is_refused() -> None:
    request = grpc_request({"a": sample("FP32"), "b": sample("FP32")}, raw=True)
    del request.raw_input_contents[1]
    refused(lambda: oip_codec.decode_infer_inputs(request, budget()), "1 entries", "2 inputs")
    request = grpc_request({"a": sample("FP32")}, raw=True)
    request.inputs[0].contents.fp32_contents.append(1.0)
    refused(lambda: oip_codec.decode_infer_inputs(request, budget()), "one form for every input")
    twice = grpc_request({"a": sample("FP32")}, raw=False)
    twice.inputs.append(twice.inputs[0])
    refused(lambda: oip_codec.decode_infer_inputs(twice, budget()), "more than once")


def test_signature_check_names_datatype_and_shape() -> None:
    spec = TensorSpec("x", np.dtype(np.float32), (None, 4))
    signature = Signature("serving_default", "", {"x": spec}, {})
    oip_codec.check_against_signature("m", signature, {"x": np.zeros((3, 4), np.float32)})
    refused(
        lambda: oip_codec.check_against_signature("m", signature, {"x": np.zeros((3, 4))}),
        "datatype FP64",
        "model 'm'",
        "expects FP32",
    )
    refused(
        lambda: oip_codec.check_against_signature(
            "m", signature, {"x": np.zeros((3, 5), np.float32)}
        ),
        "shape [3,5]",
        "expects [-1,4]",
    )


def test_rest_binary_body_round_trip() -> None:
    array = sample("INT64")
    raw = oip_codec.to_raw(array)
    header = (
        b'{"id":"7","inputs":[{"name":"x","shape":[2,3],"datatype":"INT64",'
        b'"parameters":{"binary_data_size":%d}}],'
        b'"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"z"}]}' % len(raw)
    )
    parsed = oip_codec.parse_infer_body(header + raw, str(len(header)), budget())
    assert parsed.id == "7" and parsed.inputs["x"].tolist() == array.tolist()
    assert parsed.wanted == ["y", "z"] and parsed.binary_outputs(["y", "z"]) == {"y"}
    refused(
        lambda: oip_codec.parse_infer_body(header + raw[:-1], str(len(header)), budget()),
        "runs past",
    )
    refused(
        lambda: oip_codec.parse_infer_body(header + raw + b"!", str(len(header)), budget()),
        "1 bytes of binary data",
    )
    body, length = oip_codec.encode_infer_body("m", 3, "7", {"y": array}, ["y"], {"y"})
    assert length is not None and body[length:] == raw
    assert b'"binary_data_size":%d' % len(raw) in body[:length]
