"""Suite 4, hostile input: generated PredictRequests, Open Inference Protocol
ModelInferRequests and REST bodies against one real server. Every reply is a well-formed
error or a correct answer: never INTERNAL or UNKNOWN, never a crash or a hang, and the
server's memory stays bounded.

Requests go on the wire as bytes, so they can hold what a protobuf library refuses to
build: invalid UTF-8 in names, labels and map keys, and fields no schema knows. A case
that fails is saved under corpus/ (see test_corpus.py, which replays every saved case).
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from pyserving.adapters.protos import grpc_service_pb2
from pyserving.api.oip import codec as oip_codec
from tests.reliability.conftest import Size, TrainedModels, report
from tests.reliability.models import config_file, write_version
from tests.util.processes import ServerProcess, serving
from tests.util.workers import both_modes

CORPUS = Path(__file__).parent / "corpus"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
RSS_BOUND_KIB = 300 * 1024  # requests are capped at 4 MiB; TF's allocator keeps some arenas
MAX_MESSAGE = 4 * 1024 * 1024


@dataclass
class Case:
    """A request as wire bytes, and the message it is when it parses (None for raw junk)."""

    wire: bytes
    request: Any  # predict_pb2.PredictRequest or grpc_service_pb2.ModelInferRequest


# ---------------------------------------------------------------- strategies
BAD_UTF8 = st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]
)
NAMES = st.one_of(
    st.sampled_from(["mnist", "echo", "", "MNIST", "mnist ", "../mnist"]),
    st.text(max_size=20),
)
BYTES_OR_BAD = st.one_of(
    st.binary(max_size=16),
    st.tuples(st.binary(max_size=4), BAD_UTF8, st.binary(max_size=4)).map(b"".join),
)
DIMS = st.one_of(
    st.integers(0, 8),
    st.sampled_from([-1, -(2**63), 2**31, 2**40, 2**62, 2**63 - 1, 784, 28]),
    st.sampled_from([1 << 12, 1 << 16, 1 << 20]),  # more than a request carries, within caps
)
DTYPES = st.one_of(
    st.sampled_from(
        [types_pb2.DT_FLOAT, types_pb2.DT_STRING, types_pb2.DT_INT64, types_pb2.DT_HALF]
    ),
    st.sampled_from(list(types_pb2.DataType.values())),
    st.integers(-5, 400),  # enums are open: values no DataType names
)
VALUE_FIELDS = [
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "bool_val",
    "half_val",
    "string_val",
    "scomplex_val",
    "dcomplex_val",
    "uint32_val",
    "uint64_val",
]


@st.composite
def tensors(draw: st.DrawFn) -> tuple[tensor_pb2.TensorProto, list[bytes]]:
    """A TensorProto with any dtype, shape and content; returns the strings it carries."""
    proto = tensor_pb2.TensorProto(dtype=draw(DTYPES))
    if draw(st.booleans()) and draw(st.booleans()):
        proto.tensor_shape.unknown_rank = True
    for d in draw(st.lists(DIMS, max_size=4)):
        proto.tensor_shape.dim.add(size=d)
    strings: list[bytes] = []
    content = draw(st.sampled_from(["matching", "other_field", "tensor_content", "none"]))
    if content == "tensor_content":
        proto.tensor_content = draw(st.binary(max_size=4096))
    elif content != "none":
        field = draw(st.sampled_from(VALUE_FIELDS))
        if content == "matching":
            field = {
                types_pb2.DT_FLOAT: "float_val",
                types_pb2.DT_STRING: "string_val",
                types_pb2.DT_INT64: "int64_val",
                types_pb2.DT_HALF: "half_val",
            }.get(proto.dtype, field)
        count = draw(st.integers(0, 64))
        if field == "string_val":
            strings = draw(st.lists(BYTES_OR_BAD, min_size=count, max_size=count))
            proto.string_val.extend(strings)
        elif field in ("float_val", "scomplex_val"):
            getattr(proto, field).extend(
                draw(st.lists(st.floats(width=32), min_size=count, max_size=count))
            )
        elif field in ("double_val", "dcomplex_val"):
            getattr(proto, field).extend(
                draw(st.lists(st.floats(), min_size=count, max_size=count))
            )
        elif field == "bool_val":
            proto.bool_val.extend(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
        else:
            bits = {"int_val": 31, "half_val": 31, "uint32_val": 32}.get(field, 63)
            low = 0 if field.startswith("uint") else -(2**bits)
            high = 2**bits - 1
            if field == "uint64_val":
                high = 2**64 - 1
            values = draw(st.lists(st.integers(low, high), min_size=count, max_size=count))
            getattr(proto, field).extend(values)
    return proto, strings


# Every dtype the decoder takes, with the value field a client fills for it.
SHORT_FIELDS = {
    types_pb2.DT_FLOAT: ("float_val", st.floats(width=32)),
    types_pb2.DT_DOUBLE: ("double_val", st.floats()),
    types_pb2.DT_INT32: ("int_val", st.integers(-(2**31), 2**31 - 1)),
    types_pb2.DT_UINT8: ("int_val", st.integers(0, 255)),
    types_pb2.DT_INT16: ("int_val", st.integers(-(2**15), 2**15 - 1)),
    types_pb2.DT_INT8: ("int_val", st.integers(-128, 127)),
    types_pb2.DT_UINT16: ("int_val", st.integers(0, 2**16 - 1)),
    types_pb2.DT_INT64: ("int64_val", st.integers(-(2**63), 2**63 - 1)),
    types_pb2.DT_UINT32: ("uint32_val", st.integers(0, 2**32 - 1)),
    types_pb2.DT_UINT64: ("uint64_val", st.integers(0, 2**64 - 1)),
    types_pb2.DT_BOOL: ("bool_val", st.booleans()),
    types_pb2.DT_HALF: ("half_val", st.integers(0, 2**16 - 1)),
    types_pb2.DT_COMPLEX64: ("scomplex_val", st.floats(width=32)),
    types_pb2.DT_COMPLEX128: ("dcomplex_val", st.floats()),
    types_pb2.DT_STRING: ("string_val", BYTES_OR_BAD),
}


@st.composite
def short_tensors(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    """A tensor of any dtype carrying a few values whose shape claims many more (TF repeats
    the last value): from a few KiB to past the server's byte budget."""
    dtype = draw(st.sampled_from(sorted(SHORT_FIELDS)))
    field, values = SHORT_FIELDS[dtype]
    count = draw(st.integers(1, 3)) * (2 if field.endswith("complex_val") else 1)
    proto = tensor_pb2.TensorProto(dtype=dtype)
    getattr(proto, field).extend(draw(st.lists(values, min_size=count, max_size=count)))
    for size in draw(st.lists(st.sampled_from([1, 3, 64, 1000, 1 << 12, 1 << 16]), max_size=3)):
        proto.tensor_shape.dim.add(size=size)
    return proto


def mnist_images(n: int, seed: int) -> tensor_pb2.TensorProto:
    images = np.random.default_rng(seed).random((n, 64), dtype=np.float32)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=images.tobytes())
    proto.tensor_shape.dim.add(size=n)
    proto.tensor_shape.dim.add(size=64)
    return proto


@st.composite
def predict_cases(draw: st.DrawFn) -> Case:
    """PredictRequests from valid to hostile, serialised, then corrupted where drawn."""
    if draw(st.integers(0, 3)) == 0:
        valid = draw(valid_requests())
        return Case(valid.SerializeToString(), valid)
    request = predict_pb2.PredictRequest()
    swaps = BadUtf8(draw)
    text_or_bad = swaps.text

    request.model_spec.name = text_or_bad(NAMES)
    spec = draw(st.sampled_from(["latest", "version", "label"]))
    if spec == "version":
        request.model_spec.version.value = draw(
            st.one_of(st.sampled_from([1, 2, 3, 0, -1]), st.integers(-(2**63), 2**63 - 1))
        )
    elif spec == "label":
        labels = st.one_of(st.sampled_from(["stable", "canary", "nope", ""]), st.text(max_size=8))
        request.model_spec.version_label = text_or_bad(labels)
    signatures = st.sampled_from(["", "predict_images", "serving_default", "strings", "zzz"])
    request.model_spec.signature_name = text_or_bad(st.one_of(signatures, st.text(max_size=8)))
    if draw(st.booleans()):  # a well-formed body for the real models, to reach the answers
        kind = draw(st.sampled_from(["images", "x", "s"]))
        if kind == "images":
            request.inputs["images"].CopyFrom(
                mnist_images(draw(st.integers(1, 8)), draw(st.integers(0, 99)))
            )
        elif kind == "x":
            xs = draw(st.lists(st.floats(-1e6, 1e6, width=32), max_size=16))
            request.inputs["x"].CopyFrom(_tensor(np.array(xs, np.float32)))
        else:
            strings = draw(st.lists(BYTES_OR_BAD, max_size=8))
            request.inputs["s"].CopyFrom(_strings(strings))
    names = st.one_of(st.sampled_from(["images", "x", "s", "seconds", ""]), st.text(max_size=8))
    for _ in range(draw(st.integers(0, 2))):
        tensor, _ = draw(tensors())
        request.inputs[text_or_bad(names)].CopyFrom(tensor)
    if draw(st.booleans()):  # claims more values than it carries
        request.inputs[text_or_bad(names)].CopyFrom(draw(short_tensors()))
    for _ in range(draw(st.integers(0, 2))):
        request.output_filter.append(
            text_or_bad(
                st.one_of(st.sampled_from(["scores", "classes", "y", "echo"]), st.text(max_size=6))
            )
        )
    return corrupted(draw, swaps.apply(request.SerializeToString()), predict_pb2.PredictRequest)


class BadUtf8:
    """Strings that may turn into invalid UTF-8 on the wire: an ASCII placeholder goes into
    the message, and `apply` swaps in bytes no protobuf library would serialise."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw
        self._swaps: list[tuple[bytes, bytes]] = []  # (placeholder, bad bytes of equal length)

    def text(self, strategy: st.SearchStrategy[str]) -> str:
        draw = self._draw
        if draw(st.integers(0, 9)) > 0:
            return draw(strategy)
        bad = draw(st.tuples(BAD_UTF8, st.binary(max_size=3)).map(b"".join))
        placeholder = f"~{len(self._swaps)}~".encode().ljust(len(bad), b"~")[: max(len(bad), 3)]
        bad = bad.ljust(len(placeholder), b"\xff")
        self._swaps.append((placeholder, bad))
        return placeholder.decode()

    def apply(self, wire: bytes) -> bytes:
        for placeholder, bad in self._swaps:
            wire = wire.replace(placeholder, bad, 1)
        return wire


def corrupted(draw: st.DrawFn, wire: bytes, message: type) -> Case:
    """`wire` as drawn: untouched, with an unknown field, truncated, or replaced by junk."""
    junk = draw(st.sampled_from(["none", "none", "unknown_field", "truncated", "garbage"]))
    if junk == "unknown_field":  # field 97, length-delimited: a newer client's field
        payload = draw(st.binary(max_size=32))
        wire += bytes([97 << 3 & 0x7F | 0x80, 97 >> 4, len(payload)]) + payload
    elif junk == "truncated" and wire:
        wire = wire[: draw(st.integers(0, len(wire) - 1))]
    elif junk == "garbage":
        wire = draw(st.binary(max_size=256))
    try:
        parsed = message.FromString(wire)
    except Exception:
        parsed = None
    return Case(wire, parsed)


@st.composite
def valid_requests(draw: st.DrawFn) -> predict_pb2.PredictRequest:
    """Requests the served models must answer, and answer right."""
    request = predict_pb2.PredictRequest()
    target = draw(st.sampled_from(["mnist", "echo_x", "echo_s"]))
    if target == "mnist":
        request.model_spec.name = "mnist"
        request.model_spec.signature_name = "predict_images"
        spec = draw(st.sampled_from(["latest", 1, 2, "stable", "canary"]))
        if isinstance(spec, int):
            request.model_spec.version.value = spec
        elif spec != "latest":
            request.model_spec.version_label = spec
        n = draw(st.integers(1, 8))
        request.inputs["images"].CopyFrom(mnist_images(n, draw(st.integers(0, 99))))
        if draw(st.booleans()):
            request.output_filter.append("scores")
    elif target == "echo_x":
        request.model_spec.name = "echo"
        xs = draw(st.lists(st.floats(-1e6, 1e6, width=32), max_size=16))
        request.inputs["x"].CopyFrom(_tensor(np.array(xs, np.float32)))
    else:
        request.model_spec.name = "echo"
        request.model_spec.signature_name = "strings"
        request.inputs["s"].CopyFrom(_strings(draw(st.lists(BYTES_OR_BAD, max_size=8))))
    return request


def _tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.float_val.extend(array.tolist())
    proto.tensor_shape.dim.add(size=len(array))
    return proto


def _strings(values: list[bytes]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.string_val.extend(values)
    proto.tensor_shape.dim.add(size=len(values))
    return proto


# ------------------------------------------------------------------ checking
def save_to_corpus(wire: bytes, why: str, kind: str = "predict") -> Path:
    CORPUS.mkdir(exist_ok=True)
    path = CORPUS / f"{hashlib.sha1(wire).hexdigest()[:16]}.{kind}.bin"
    path.write_bytes(wire)
    path.with_suffix(".txt").write_text(why + "\n")
    return path


def call_outcome(
    channel: grpc.Channel, method: str, wire: bytes, deserialize: Any
) -> tuple[str, Any]:
    """Send `wire` to `method`: (code name, reply or None); AssertionError if not allowed."""
    call = channel.unary_unary(method, response_deserializer=deserialize)
    try:
        return "OK", call(wire, timeout=20)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        if code in NEVER or code in (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.UNAVAILABLE,
        ):
            raise AssertionError(f"{code.name}: {details}") from None
        assert details.strip(), f"{code.name} without a message"
        return code.name, None


def check_reply(channel: grpc.Channel, case: Case) -> str:
    """Send one case; return the outcome's code name; AssertionError if it is not allowed."""
    outcome, reply = call_outcome(
        channel, PREDICT, case.wire, predict_pb2.PredictResponse.FromString
    )
    if outcome == "OK":
        assert case.request is not None, "junk that does not parse was answered OK"
        check_answer(case.request, reply)
    return outcome


def check_answer(request: predict_pb2.PredictRequest, reply: predict_pb2.PredictResponse) -> None:
    """An OK reply must be right, not merely present."""
    model = request.model_spec.name
    assert reply.model_spec.name == model
    version = reply.model_spec.version.value
    if request.model_spec.HasField("version"):
        assert version == request.model_spec.version.value
    outputs = reply.outputs
    if model == "mnist":
        assert version in (1, 2)
        if "scores" in outputs:
            n = request.inputs["images"].tensor_shape.dim[0].size
            scores = np.array(outputs["scores"].float_val).reshape(n, 10)
            np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-4)
    elif model == "echo":
        assert version == 1
        if "echo" in outputs:
            assert list(outputs["echo"].string_val) == list(request.inputs["s"].string_val)
            assert list(outputs["n"].int64_val) == [len(v) for v in request.inputs["s"].string_val]
        if "y" in outputs:
            x = request.inputs["x"]
            expected = np.array(x.float_val or np.frombuffer(x.tensor_content, np.float32)) * 2
            got = np.array(outputs["y"].float_val)
            if len(got) == len(expected):
                np.testing.assert_allclose(got, expected, rtol=1e-6)
    else:
        raise AssertionError(f"answered for model {model!r}, which is not served")


# ------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels,
    tmp_path_factory: pytest.TempPathFactory,
    module_workers: int,
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile")
    for version in (1, 2):
        trained_models.copy_version(version, root / "mnist")
    write_version(root / "echo", 1, factor=2.0)
    config = root / "models.config"
    config_file(config, {"echo": (root / "echo", "")})
    config.write_text(
        config.read_text().replace(
            "model_config_list {\n",
            "model_config_list {\n"
            f'  config {{ name: "mnist" base_path: "{root / "mnist"}" model_platform: '
            '"tensorflow" model_version_policy { specific { versions: 1 versions: 2 } } '
            'version_labels { key: "stable" value: 1 } '
            'version_labels { key: "canary" value: 2 } }\n',
        )
    )
    with serving(
        [
            f"--model_config_file={config}",
            "--file_system_poll_wait_seconds=0",
            f"--grpc_max_message_bytes={MAX_MESSAGE}",
        ],
        root / "server.log",
        module_workers,
        timeout=120,
    ) as process:
        yield process


def exploring(size: Size, max_examples: int) -> settings:
    """Hypothesis settings for sending cases to a server: no deadline, no database; in CI
    the same cases every run, with --long new ones."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=not size.long,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


def explore(
    server: ServerProcess,
    cases: st.SearchStrategy[Case],
    check: Callable[[grpc.Channel, Case], str],
    kind: str,
    max_examples: int,
    size: Size,
) -> dict[str, int]:
    """Send every generated case; a failing one is saved to the corpus. The server must
    live through them with its memory bounded, and some must reach a model."""
    channel = server.channel
    seen: dict[str, int] = {}
    before = server.figures()

    @exploring(size, max_examples)
    @given(cases)
    def property_(case: Case) -> None:
        failing.append(case)  # popped when the case passes: what is left failed
        outcome = check(channel, case)
        failing.pop()
        seen[outcome] = seen.get(outcome, 0) + 1

    failing: list[Case] = []
    try:
        property_()
    except AssertionError as exc:
        if failing:  # hypothesis replays the shrunk case last: that one is kept
            saved = save_to_corpus(failing[-1].wire, str(exc).split("\n")[0], kind)
            raise AssertionError(f"{exc}\n(case saved as {saved})") from None
        raise
    assert server.process.poll() is None, "the server died"
    after = server.figures()
    report(
        "hostile_input_grpc" if kind == "predict" else f"hostile_input_{kind}",
        cases_generated=sum(seen.values()),
        outcomes=seen,
        rss_before_mib=round(before.rss_kib / 1024, 1),
        rss_after_mib=round(after.rss_kib / 1024, 1),
    )
    assert seen.get("OK", 0) > 0, f"no generated case reached a model: {seen}"
    assert after.rss_kib - before.rss_kib < RSS_BOUND_KIB
    return seen


def test_generated_predict_requests_get_well_formed_errors_or_right_answers(
    server: ServerProcess, size: Size
) -> None:
    for case in (Case(b"", predict_pb2.PredictRequest()),):  # warm the path first
        check_reply(server.channel, case)
    explore(server, predict_cases(), check_reply, "predict", size.pick(200, 3000), size)


def replay(
    server: ServerProcess,
    paths: list[Path],
    message: type,
    check: Callable[[grpc.Channel, Case], str],
) -> None:
    """Send each saved case again; it must still get a well-formed answer."""
    for path in paths:
        wire = path.read_bytes()
        try:
            parsed = message.FromString(wire)
        except Exception:
            parsed = None
        try:
            check(server.channel, Case(wire, parsed))
        except AssertionError as exc:
            why = path.with_suffix(".txt").read_text().strip()
            raise AssertionError(f"{path.name} ({why}) broke again: {exc}") from None


def test_corpus_cases_that_once_broke_the_server_get_well_formed_errors(
    server: ServerProcess,
) -> None:
    cases = sorted(CORPUS.glob("*.predict.bin"))
    assert cases, f"the corpus at {CORPUS} is empty"
    replay(server, cases, predict_pb2.PredictRequest, check_reply)
    infer_cases_saved = sorted(CORPUS.glob("*.model_infer.bin"))
    replay(server, infer_cases_saved, grpc_service_pb2.ModelInferRequest, check_infer_reply)
    report("hostile_input_corpus", cases_replayed=len(cases) + len(infer_cases_saved))


# ------------------------------------------------------ Open Inference Protocol
OIP_DATATYPES = st.one_of(
    st.sampled_from(sorted(oip_codec.DATATYPES)),
    st.sampled_from(["", "fp32", "FP8", "STRING", "DT_FLOAT"]),
    st.text(max_size=6),
)
OIP_VERSIONS = st.one_of(
    st.sampled_from(["", "1", "2", "3", "0", "-1", "01", "v1", "1.0", " 1", "\u0661", "9" * 30]),
    st.text(max_size=6),
)
CONTENTS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": BYTES_OR_BAD,
}


def infer_parameter(draw: st.DrawFn, out: grpc_service_pb2.InferParameter) -> None:
    kind = draw(st.sampled_from(["bool", "int64", "string", "double", "uint64", "none"]))
    if kind == "bool":
        out.bool_param = draw(st.booleans())
    elif kind == "int64":
        out.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    elif kind == "double":
        out.double_param = draw(st.floats())
    elif kind == "uint64":
        out.uint64_param = draw(st.integers(0, 2**64 - 1))
    elif kind == "string":
        out.string_param = draw(
            st.one_of(
                st.sampled_from(["predict_images", "serving_default", "stable", "canary", "zz"]),
                st.text(max_size=8),
            )
        )


def add_images(draw: st.DrawFn, request: grpc_service_pb2.ModelInferRequest) -> None:
    """A well-formed `images` input for the digits model: FP32 [n, 64], raw or typed."""
    n = draw(st.integers(1, 8))
    images = np.random.default_rng(draw(st.integers(0, 99))).random((n, 64), dtype=np.float32)
    tensor = request.inputs.add(name="images", datatype="FP32", shape=[n, 64])
    if request.raw_input_contents or (not request.inputs[:-1] and draw(st.booleans())):
        request.raw_input_contents.append(images.tobytes())
    else:
        tensor.contents.fp32_contents.extend(images.ravel().tolist())


@st.composite
def valid_infer_requests(draw: st.DrawFn) -> grpc_service_pb2.ModelInferRequest:
    """ModelInferRequests the digits model must answer, and answer right."""
    request = grpc_service_pb2.ModelInferRequest(model_name="mnist", id=draw(st.text(max_size=8)))
    spec = draw(st.sampled_from(["latest", "1", "2", "stable", "canary"]))
    if spec in ("1", "2"):
        request.model_version = spec
    elif spec != "latest":
        request.parameters["version_label"].string_param = spec
    if draw(st.booleans()):
        request.parameters["signature_name"].string_param = "predict_images"
    add_images(draw, request)
    if draw(st.booleans()):
        output = request.outputs.add(name="scores")
        if draw(st.booleans()):
            output.parameters["binary_data"].bool_param = draw(st.booleans())
    return request


@st.composite
def infer_cases(draw: st.DrawFn) -> Case:
    """ModelInferRequests from valid to hostile, serialised, then corrupted where drawn."""
    if draw(st.integers(0, 3)) == 0:
        valid = draw(valid_infer_requests())
        return Case(valid.SerializeToString(), valid)
    swaps = BadUtf8(draw)
    request = grpc_service_pb2.ModelInferRequest(
        model_name=swaps.text(NAMES),
        model_version=swaps.text(OIP_VERSIONS),
        id=swaps.text(st.text(max_size=8)),
    )
    keys = st.sampled_from(["signature_name", "version_label", "binary_data_output", "timeout"])
    for key in draw(st.lists(st.one_of(keys, st.text(max_size=6)), max_size=3)):
        infer_parameter(draw, request.parameters[swaps.text(st.just(key))])
    raw = draw(st.booleans())
    if draw(st.booleans()):
        add_images(draw, request)
    names = st.one_of(st.sampled_from(["images", "x", "s", ""]), st.text(max_size=8))
    for _ in range(draw(st.integers(0, 2))):
        tensor = request.inputs.add(
            name=swaps.text(names),
            datatype=swaps.text(OIP_DATATYPES),
            shape=draw(st.lists(DIMS, max_size=4)),
        )
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=1024)))
        elif draw(st.booleans()):
            field = draw(st.sampled_from(sorted(CONTENTS)))
            count = draw(st.integers(0, 64))
            values = draw(st.lists(CONTENTS[field], min_size=count, max_size=count))
            getattr(tensor.contents, field).extend(values)
    if raw and draw(st.booleans()):  # one raw entry too many or too few
        if draw(st.booleans()) or not request.raw_input_contents:
            request.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            del request.raw_input_contents[-1]
    outputs = st.one_of(st.sampled_from(["scores", "y", "echo", ""]), st.text(max_size=6))
    for _ in range(draw(st.integers(0, 2))):
        output = request.outputs.add(name=swaps.text(outputs))
        if draw(st.booleans()):
            infer_parameter(draw, output.parameters["binary_data"])
    wire = swaps.apply(request.SerializeToString())
    return corrupted(draw, wire, grpc_service_pb2.ModelInferRequest)


def check_infer_reply(channel: grpc.Channel, case: Case) -> str:
    """One ModelInfer case: a well-formed error, or an answer that is right."""
    outcome, reply = call_outcome(
        channel, MODEL_INFER, case.wire, grpc_service_pb2.ModelInferResponse.FromString
    )
    if outcome != "OK":
        return outcome
    request = case.request
    assert request is not None, "junk that does not parse was answered OK"
    assert reply.model_name == request.model_name and reply.id == request.id
    if request.model_version:
        assert reply.model_version == str(int(request.model_version))
    for i, output in enumerate(reply.outputs):
        if reply.raw_output_contents:
            values = np.frombuffer(reply.raw_output_contents[i], np.float32)
        else:
            values = np.array(output.contents.fp32_contents, np.float32)
        if request.model_name == "mnist":
            assert output.name == "scores" and output.datatype == "FP32"
            scores = values.reshape(list(output.shape))
            np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-4)
    if request.model_name not in ("mnist", "echo"):
        raise AssertionError(f"answered for model {request.model_name!r}, which is not served")
    return outcome


def test_generated_model_infer_requests_get_well_formed_errors_or_right_answers(
    server: ServerProcess, size: Size
) -> None:
    check_infer_reply(server.channel, Case(b"", grpc_service_pb2.ModelInferRequest()))
    explore(server, infer_cases(), check_infer_reply, "model_infer", size.pick(200, 3000), size)


# ----------------------------------------------------------------------- REST
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=40,
)


@st.composite
def rest_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """(URL path, body) for TF Serving's REST predict API, from valid to hostile."""
    model = draw(st.sampled_from(["mnist", "echo", "nope", "m%FFx", "mnist/versions/x"]))
    where = draw(
        st.sampled_from(["", "/versions/1", "/versions/2", "/labels/stable", "/versions/-1"])
    )
    verb = draw(st.sampled_from([":predict", ":predict", ":classify", ":nonsense"]))
    shape = draw(st.sampled_from(["instances", "inputs", "both", "neither", "junk"]))
    body: object
    if shape == "junk":
        body = draw(JSON_VALUES)
    else:
        instances = draw(
            st.one_of(
                st.lists(st.lists(st.floats(0, 1, width=32), min_size=64, max_size=64), max_size=3),
                st.lists(st.floats(width=32), max_size=8),
                JSON_VALUES,
                st.just([{"b64": "////"}]),
            )
        )
        body = {
            "instances": {"instances": instances},
            "inputs": {"inputs": instances},
            "both": {"instances": instances, "inputs": instances},
            "neither": {"signature_name": draw(st.text(max_size=8))},
        }[shape]
    raw = json.dumps(body).encode()
    corruption = draw(st.sampled_from(["none", "none", "bad_utf8", "truncated", "binary"]))
    if corruption == "bad_utf8":
        raw = (
            raw[:-1] + b'"\xff\xfe"' + raw[-1:]
            if raw.endswith(b"}")
            else b'{"instances": ["\xff"]}'
        )
    elif corruption == "truncated" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif corruption == "binary":
        raw = draw(st.binary(max_size=256))
    return f"/v1/models/{model}{where}{verb}", raw


@st.composite
def v2_infer_bodies(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """(URL path, body, headers) for the Open Inference Protocol's `POST .../infer`: JSON
    tensors or the binary-data extension, from valid to hostile."""
    valid = draw(st.integers(0, 3)) == 0  # a request the model must answer

    def pick(good: Any, hostile: st.SearchStrategy[Any]) -> Any:
        return good if valid else draw(st.one_of(st.just(good), hostile))

    model = pick("mnist", st.sampled_from(["nope", "m%FFx"]))
    version = pick("", st.sampled_from(["/versions/1", "/versions/x", "/versions/" + "9" * 25]))
    n = draw(st.integers(1, 3))
    images = np.random.default_rng(draw(st.integers(0, 99))).random((n, 64), dtype=np.float32)
    entry: dict[str, Any] = {
        "name": pick("images", st.sampled_from(["x", ""])),
        "datatype": pick("FP32", OIP_DATATYPES),
        "shape": pick([n, 64], st.one_of(st.lists(DIMS, max_size=3), JSON_VALUES)),
    }
    binary = b""
    form = (
        draw(st.sampled_from(["json", "binary"]))
        if valid
        else draw(st.sampled_from(["json", "binary", "junk_data", "none"]))
    )
    if form == "json":
        entry["data"] = images.ravel().tolist() if draw(st.booleans()) else images.tolist()
    elif form == "binary":
        binary = images.tobytes()
        if not valid and draw(st.booleans()):
            binary = binary[: draw(st.integers(0, len(binary)))] + draw(st.binary(max_size=8))
        entry["parameters"] = {"binary_data_size": pick(len(binary), JSON_SCALARS)}
    elif form == "junk_data":
        entry["data"] = draw(JSON_VALUES)
    body: dict[str, Any] = {"inputs": pick([entry], JSON_VALUES)}
    if draw(st.booleans()):
        output = {"name": pick("scores", st.just("nope"))}
        output["parameters"] = {"binary_data": pick(draw(st.booleans()), JSON_SCALARS)}
        body["outputs"] = [output]
    if draw(st.booleans()):
        keys = st.sampled_from(["binary_data_output", "signature_name", "version_label", "x"])
        values = st.one_of(st.sampled_from(["predict_images", "stable", True]), JSON_SCALARS)
        body["parameters"] = (
            {"signature_name": "predict_images", "binary_data_output": draw(st.booleans())}
            if valid
            else draw(st.dictionaries(keys, values, max_size=3))
        )
    if draw(st.booleans()):
        body["id"] = pick("req", JSON_SCALARS)
    header = json.dumps(body).encode()
    headers = {}
    if binary or draw(st.booleans()):
        text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=6)
        headers["Inference-Header-Content-Length"] = pick(str(len(header)), text)
    raw = header + binary
    corruption = "none" if valid else draw(st.sampled_from(["none", "truncated", "garbage"]))
    if corruption == "truncated" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif corruption == "garbage":
        raw = draw(st.binary(max_size=256))
    return f"/v2/models/{model}{version}/infer", raw, headers


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """(status, headers, body) of a POST, whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@both_modes
def test_generated_rest_bodies_get_well_formed_errors_or_answers(
    trained_models: TrainedModels, tmp_path: Path, size: Size, workers: int
) -> None:
    trained_models.copy_version(1, tmp_path / "mnist")
    process = ServerProcess(
        ["--model_name=mnist", f"--model_base_path={tmp_path / 'mnist'}"],
        tmp_path / "server.log",
        workers=workers,
        rest=True,
    )
    try:
        process.wait_serving(timeout=120)
        seen: dict[int, int] = {}

        @exploring(size, size.pick(150, 2000))
        @given(rest_bodies())
        def property_(case: tuple[str, bytes]) -> None:
            path, body = case
            status, _, text = post(process.url(path), body)
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, f"{status} for POST {path} {body[:200]!r}: {text[:300]!r}"
            parsed = json.loads(text)  # always JSON, TF Serving's shape
            if status >= 400:
                assert isinstance(parsed.get("error"), str) and parsed["error"]
            else:
                assert "predictions" in parsed or "outputs" in parsed or "results" in parsed

        property_()
        assert process.process.poll() is None, "the server died"
        report("hostile_input_rest", cases_generated=sum(seen.values()), statuses=seen)

        seen_v2: dict[int, int] = {}

        @exploring(size, size.pick(150, 2000))
        @given(v2_infer_bodies())
        def v2_property(case: tuple[str, bytes, dict[str, str]]) -> None:
            path, body, headers = case
            status, reply_headers, text = post(process.url(path), body, headers)
            seen_v2[status] = seen_v2.get(status, 0) + 1
            assert status < 500, (
                f"{status} for POST {path} {headers} {body[:200]!r}: {text[:300]!r}"
            )
            length = reply_headers.get("Inference-Header-Content-Length")
            parsed = json.loads(text[: int(length)] if length else text)
            if status >= 400:
                assert isinstance(parsed.get("error"), str) and parsed["error"]
            else:
                assert parsed["model_name"] == "mnist"
                [output] = parsed["outputs"]
                assert output["name"] == "scores" and output["datatype"] == "FP32"

        v2_property()
        assert process.process.poll() is None, "the server died"
        report("hostile_input_rest_v2", cases_generated=sum(seen_v2.values()), statuses=seen_v2)
        assert seen_v2.get(200, 0) > 0, f"no generated /v2 body reached the model: {seen_v2}"
    finally:
        process.stop()
