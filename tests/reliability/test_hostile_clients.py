"""Suite 7, hostile clients: one client's requests and connections must not hurt the others.

Against one real server (gRPC and REST, the repository API behind --restricted_api):
- tiny requests that claim huge tensors (TensorProto's "repeat the last value", the Open
  Inference Protocol's BYTES) are refused before anything is allocated, and what passes
  but is big is decoded off the event loop: a normal client's p99 stays under a bound while
  they run, and the server's memory comes back;
- slow, stalled and idle REST connections are closed within their timeouts, and past the
  connection limit the oldest idle one makes room;
- client input is never a 5xx: a wrong Content-Encoding, a client gone mid-body, a header
  that is not UTF-8, an oversized admin body, numbers out of range, huge names.
"""

from __future__ import annotations

import json
import select
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from tests.reliability.conftest import TrainedModels, predict_request, report
from tests.util.processes import ServerProcess, serving

PREDICT = "/tensorflow.serving.PredictionService/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
SIGNATURE = "predict_images"
ADMIN_KEY, ADMIN_VALUE = "x-admin-key", "let-me-in"
MAX_MESSAGE = 64 * 1024 * 1024  # the default: --max_request_tensor_bytes is then 128 MiB
# The idle timer also runs from a connection's start: it must fire well after the header
# and body timeouts plus SLACK_S, or those tests would pass on the idle timer alone.
HEADER_TIMEOUT_S, BODY_TIMEOUT_S, IDLE_TIMEOUT_S = 1.0, 1.0, 4.0
MAX_CONNECTIONS = 24
SLACK_S = 2.0  # a closed connection is seen within its timeout plus this
P99_BOUND_S = 0.25
RSS_BOUND_MIB = 150


class RestServer(ServerProcess):
    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url("/monitoring/prometheus/metrics"), timeout=10) as r:
            text = r.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@pytest.fixture(scope="module")
def server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory, module_workers: int
) -> Iterator[RestServer]:
    root = tmp_path_factory.mktemp("hostile_clients")
    trained_models.copy_version(1, root / "repository" / "mnist")
    monitoring = root / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    with serving(
        [
            f"--model_repository={root / 'repository'}",
            f"--monitoring_config_file={monitoring}",
            f"--restricted_api=model-repository:{ADMIN_KEY}={ADMIN_VALUE}",
            f"--grpc_max_message_bytes={MAX_MESSAGE}",
            f"--rest_header_timeout_seconds={HEADER_TIMEOUT_S}",
            f"--rest_body_timeout_seconds={BODY_TIMEOUT_S}",
            f"--rest_idle_timeout_seconds={IDLE_TIMEOUT_S}",
            f"--rest_max_connections={MAX_CONNECTIONS}",
            "--file_system_poll_wait_seconds=0",
        ],
        root / "server.log",
        module_workers,
        timeout=120,
        server_class=RestServer,
        rest=True,
    ) as process:
        load = "/v2/repository/models/mnist/load"
        status, doc = post(process, load, b"{}", {ADMIN_KEY: ADMIN_VALUE})
        assert status == 200, doc
        yield process


# ------------------------------------------------------------------- requests
def short_tensor(dtype: int, shape: tuple[int, ...], **values: list) -> tensor_pb2.TensorProto:
    """A TensorProto that carries `values` but claims `shape` (TF repeats the last value)."""
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for d in shape:
        proto.tensor_shape.dim.add(size=d)
    return proto


def predict_bytes(inputs: dict[str, tensor_pb2.TensorProto], model: str = "mnist") -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request.SerializeToString()


# The issue's reproductions, byte for byte: a 66-byte Predict claiming a 1 GiB complex128
# tensor, and a 32-byte ModelInfer claiming 2^26 BYTES elements it does not carry.
GIGABYTE_PREDICT = bytes.fromhex(
    "0a170a056d6e6973741a0e707265646963745f696d6167657312270a06696d61676573121d08121207120508"
    "808080206210000000000000f03f0000000000000040"
)
BYTES_INFER = bytes.fromhex("0a056d6e6973742a150a06696d61676573120542595445531a04808080203a00")

# Claims each dtype may make: past the budget (refused), and under it but big (decoded off
# the loop, then refused by the signature: `imagez` is no input of the model).
OVER_BUDGET = {
    "float [2^20, 64] (256 MiB)": short_tensor(types_pb2.DT_FLOAT, (1 << 20, 64), float_val=[1]),
    "string [2^22] (256 MiB)": short_tensor(types_pb2.DT_STRING, (1 << 22,), string_val=[b"x"]),
    "int64 [2^25] (256 MiB)": short_tensor(types_pb2.DT_INT64, (1 << 25,), int64_val=[7]),
    "half [2^27] (elements)": short_tensor(types_pb2.DT_HALF, (1 << 27,), half_val=[1]),
}
UNDER_BUDGET = {
    "float [400000, 64] (98 MiB)": short_tensor(types_pb2.DT_FLOAT, (400_000, 64), float_val=[1]),
    "string [1.5M] (92 MiB)": short_tensor(
        types_pb2.DT_STRING, (1_500_000,), string_val=[b"a", b"b"]
    ),
    "bool [2^26] (64 MiB)": short_tensor(types_pb2.DT_BOOL, (1 << 26,), bool_val=[True]),
}


def call(channel: grpc.Channel, method: str, wire: bytes, timeout: float = 30) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(method)(wire, timeout=timeout)
    return caught.value


def hostile_mix() -> list[tuple[str, bytes]]:
    mix = [(PREDICT, GIGABYTE_PREDICT), (MODEL_INFER, BYTES_INFER)]
    mix += [(PREDICT, predict_bytes({"images": p})) for p in OVER_BUDGET.values()]
    mix += [(PREDICT, predict_bytes({"imagez": p})) for p in UNDER_BUDGET.values()]
    return mix


# ---------------------------------------------------------------- decoding
def test_the_issues_tiny_requests_are_refused_unallocated(server: RestServer) -> None:
    before = server.figures().rss_mib
    error = call(server.channel, PREDICT, GIGABYTE_PREDICT)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    details = error.details()
    assert "'images'" in details and "1073741824 bytes" in details, details
    assert "--max_request_tensor_bytes" in details, details
    error = call(server.channel, MODEL_INFER, BYTES_INFER)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "'images'" in error.details() and "limit" in error.details()
    for what, proto in OVER_BUDGET.items():
        error = call(server.channel, PREDICT, predict_bytes({"images": proto}))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (what, error.details())
        assert "images" in error.details() and "limit" in error.details(), what
    after = server.figures().rss_mib
    assert after - before < 50, f"refused requests took memory: {before:.0f} -> {after:.0f} MiB"


def test_rest_binary_and_json_claims_are_refused_before_allocation(server: RestServer) -> None:
    """The same budget on the Open Inference Protocol's REST forms: a binary BYTES tensor
    of 4 bytes claiming 2^26 elements, and JSON data claiming a shape it does not fill."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "BYTES",
                    "shape": [1 << 26],
                    "parameters": {"binary_data_size": 4},
                }
            ]
        }
    ).encode()
    status, doc = post(
        server,
        "/v2/models/mnist/infer",
        header + b"\x00\x00\x00\x00",
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 429 and "'images'" in doc["error"] and "limit" in doc["error"], doc
    claim = {"inputs": [{"name": "images", "datatype": "FP64", "shape": [1 << 25], "data": [1]}]}
    status, doc = post(server, "/v2/models/mnist/infer", json.dumps(claim).encode(), {})
    assert status == 429 and "'images'" in doc["error"], doc


def test_a_short_tensor_under_the_budget_still_expands_as_tensorflow_does(
    server: RestServer,
) -> None:
    """TF's rule stays: fewer values than the shape holds repeat the last one."""
    proto = short_tensor(types_pb2.DT_FLOAT, (3, 64), float_val=[0.5, 0.25])
    wire = predict_bytes({"images": proto})
    reply = predict_pb2.PredictResponse.FromString(
        server.channel.unary_unary(PREDICT)(wire, timeout=30)
    )
    expected = np.full((3, 64), 0.25, np.float32)
    expected.flat[0] = 0.5
    direct = server.predict_stub.Predict(predict_request(expected), timeout=30)
    assert list(reply.outputs["scores"].float_val) == list(direct.outputs["scores"].float_val)


def latencies_while(server: RestServer, busy: Callable[[], bool]) -> list[float]:
    """Normal Predicts, one at a time, for as long as `busy()`; each must succeed."""
    request = predict_request(np.random.default_rng(0).random((1, 64), dtype=np.float32))
    seconds = []
    while busy() or len(seconds) < 50:
        started = time.perf_counter()
        server.predict_stub.Predict(request, timeout=10)
        seconds.append(time.perf_counter() - started)
    return seconds


def test_normal_clients_stay_fast_while_hostile_requests_run(server: RestServer) -> None:
    mix = hostile_mix()
    for method, wire in mix:  # once first, so the RSS baseline includes warmed-up pools
        call(server.channel, method, wire)
    latencies_while(server, lambda: False)
    before = server.figures().rss_mib
    codes: dict[str, int] = {}

    def attack(seed: int) -> None:
        for i in range(30):
            method, wire = mix[(seed + i) % len(mix)]
            code = call(server.channel, method, wire).code().name
            codes[code] = codes.get(code, 0) + 1

    with ThreadPoolExecutor(3) as pool:
        attackers = [pool.submit(attack, seed) for seed in range(2)]
        watcher = pool.submit(latencies_while, server, lambda: not all(a.done() for a in attackers))
        for attacker in attackers:
            attacker.result()
        seconds = watcher.result()
    after = server.figures().rss_mib
    p99 = float(np.percentile(seconds, 99))
    report(
        "hostile_clients",
        hostile_requests=sum(codes.values()),
        codes=codes,
        normal_requests=len(seconds),
        normal_p50_ms=round(statistics.median(seconds) * 1000, 2),
        normal_p99_ms=round(p99 * 1000, 2),
        rss_before_mib=round(before, 1),
        rss_after_mib=round(after, 1),
    )
    assert set(codes) <= {"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"}, codes
    assert p99 < P99_BOUND_S, f"a normal client's p99 was {p99 * 1000:.0f} ms beside them"
    assert after - before < RSS_BOUND_MIB, f"RSS {before:.0f} -> {after:.0f} MiB"


# ---------------------------------------------------------------- connections
def connect(server: RestServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)
    return sock


def seconds_until_closed(sock: socket.socket, limit_s: float) -> tuple[float, bytes]:
    """How long until the server closes `sock` (reading what it sent), at most `limit_s`."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {limit_s} s; received {received[:200]!r}") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


def test_a_request_whose_headers_stall_is_closed_within_the_header_timeout(
    server: RestServer,
) -> None:
    stalled = connect(server)
    stalled.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\n")
    trickling = connect(server)
    trickle = b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"

    def drip() -> None:  # one byte every 0.2 s: each byte arrives, the headers never end
        for byte in trickle:
            try:
                trickling.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    for sock in (stalled, trickling):
        took, _ = seconds_until_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
        assert took < HEADER_TIMEOUT_S + SLACK_S
    dripper.join(timeout=30)
    assert rest_predict(server) == 200  # others are served


def test_an_idle_connection_is_closed_after_the_idle_timeout(server: RestServer) -> None:
    fresh = connect(server)
    took, _ = seconds_until_closed(fresh, IDLE_TIMEOUT_S + SLACK_S)
    assert took > IDLE_TIMEOUT_S - 0.5
    kept = connect(server)  # a keep-alive connection after its reply
    kept.sendall(b"GET /v1/models/mnist HTTP/1.1\r\nHost: x\r\n\r\n")
    took, received = seconds_until_closed(kept, IDLE_TIMEOUT_S + SLACK_S)
    assert received.startswith(b"HTTP/1.1 200"), received[:100]
    assert took > IDLE_TIMEOUT_S - 0.5


def test_a_body_that_stops_arriving_gets_408_within_the_body_timeout(
    server: RestServer,
) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        b'{"instances": ['
    )
    took, received = seconds_until_closed(sock, BODY_TIMEOUT_S + SLACK_S)
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"--rest_body_timeout_seconds" in received
    assert took < BODY_TIMEOUT_S + SLACK_S


# In-process only: --rest_max_connections is each front-end's (a file-descriptor guard), and
# the kernel spreads connections over them, so which is a process's oldest is not known.
@pytest.mark.parametrize("module_workers", [0], ids=["in_process"], indirect=True)
def test_past_the_connection_limit_the_oldest_idle_connection_makes_room(
    server: RestServer,
) -> None:
    opened = time.monotonic()
    idle = [connect(server) for _ in range(MAX_CONNECTIONS)]
    assert rest_predict(server) == 200  # a newcomer is served
    readable, _, _ = select.select(idle, [], [], 0.5)
    closed = [sock for sock in readable if _closed(sock)]
    # All within the idle timeout: only the connection cap can have closed them.
    assert time.monotonic() - opened < IDLE_TIMEOUT_S
    assert closed and closed[0] is idle[0], "the oldest idle connection was not closed"
    for sock in idle:
        sock.close()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------- no 5xx
def rest_predict(server: RestServer, body: bytes | None = None, **headers: str) -> int:
    status, _ = post(server, "/v1/models/mnist:predict", body, headers)
    return status


def post(
    server: RestServer, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict]:
    if body is None:
        body = json.dumps({"signature_name": SIGNATURE, "instances": [[0.5] * 64]}).encode()
    return server.call(path, body, headers)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
@pytest.mark.parametrize("path", ["/v1/models/mnist:predict", "/v2/models/mnist/infer"])
def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(
    server: RestServer, encoding: str, path: str
) -> None:
    status, doc = post(server, path, b'{"instances": [[1.0]]}', {"Content-Encoding": encoding})
    assert status == 400, doc
    assert encoding in doc["error"]
    bad_gzip = b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"not deflate data at all" * 20
    status, doc = post(server, path, bad_gzip, {"Content-Encoding": "gzip"})
    assert status == 400, doc


def test_an_unknown_content_encoding_is_a_415_naming_it(server: RestServer) -> None:
    status, doc = post(server, "/v1/models/mnist:predict", b"{}", {"Content-Encoding": "snappy"})
    assert status == 415 and "snappy" in doc["error"], doc


def test_a_client_gone_mid_body_is_cancelled_not_internal(server: RestServer) -> None:
    def cancelled() -> float:
        labels = (("api", "rest_predict"), ("code", "CANCELLED"), ("model", "mnist"))
        return server.metrics().get(("pyserving_requests_total", labels), 0.0)

    before = cancelled()
    sock = connect(server)
    sock.sendall(
        b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
        + b"{" * 100
    )
    sock.close()
    server.wait_for(lambda: cancelled() == before + 1, timeout=10, what="a CANCELLED request")
    log = server.log_text()
    assert "the client closed the connection before the body was sent" in log
    assert "Traceback" not in log and '"level": "error"' not in log


def test_a_restricted_header_that_is_not_utf8_is_a_403(server: RestServer) -> None:
    sock = connect(server)
    body = b'{"ready": true}'
    sock.sendall(
        b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n"
        + ADMIN_KEY.encode()
        + b": \xff\xfe\xc3\x28\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    _, received = seconds_until_closed(sock, 10)
    assert received.startswith(b"HTTP/1.1 403"), received[:200]


def test_an_oversized_repository_body_is_a_413(server: RestServer) -> None:
    def body(size: int) -> bytes:
        return b'{"ready": false, "x": "' + b"a" * size + b'"}'

    # Over aiohttp's own 1 MiB default (a 500 once) but under the message limit: read.
    status, doc = post(server, "/v2/repository/index", body(2 << 20), {ADMIN_KEY: ADMIN_VALUE})
    assert status == 200, doc
    sock = connect(server)  # over the limit: answered before the body is sent
    sock.sendall(
        f"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\n{ADMIN_KEY}: {ADMIN_VALUE}\r\n"
        f"Content-Length: {MAX_MESSAGE + 1}\r\n\r\n".encode()
    )
    _, received = seconds_until_closed(sock, 10)
    assert received.startswith(b"HTTP/1.1 413"), received[:200]


def test_a_number_too_big_for_a_double_is_a_400_naming_the_input(server: RestServer) -> None:
    """Not Infinity (orjson's reading): TF Serving's reader refuses it."""
    row = ", ".join(["0.5"] * 63)
    v1 = f'{{"signature_name": "{SIGNATURE}", "instances": [[1e400, {row}]]}}'
    status, doc = post(server, "/v1/models/mnist:predict", v1.encode(), {})
    assert status == 400, doc
    assert "input 'images'" in doc["error"] and "too big to be stored in a double" in doc["error"]


@pytest.mark.parametrize(
    ("datatype", "data", "fragment"),
    [
        ("FP32", "1e400", "too big to be stored in a double"),
        ("FP32", "1e39", "out of range for FP32"),
        ("INT64", str(2**70), "has datatype INT64 but its data holds number values"),
        ("UINT64", f"-1, {2**64 - 1}", "-1 is out of range for UINT64"),
        ("INT32", f"-1, {2**64 - 1}", f"{2**64 - 1} is out of range for INT32"),
    ],
)
def test_v2_numbers_out_of_their_datatype_are_a_400_naming_the_input(
    server: RestServer, datatype: str, data: str, fragment: str
) -> None:
    count = len(data.split(","))
    body = {
        "parameters": {"signature_name": SIGNATURE},
        "inputs": [{"name": "images", "datatype": datatype, "shape": [count], "data": []}],
    }
    text = json.dumps(body).replace('"data": []', f'"data": [{data}]')
    status, doc = post(server, "/v2/models/mnist/infer", text.encode(), {})
    assert status == 400 and "images" in doc["error"] and fragment in doc["error"], doc


def test_nan_and_infinity_tokens_still_work(server: RestServer) -> None:
    row = ", ".join(["0.5"] * 61)
    body = f'{{"signature_name": "{SIGNATURE}", "instances": [[NaN, Infinity, -Infinity, {row}]]}}'
    assert rest_predict(server, body.encode()) == 200


def test_huge_client_strings_are_quoted_cut_with_the_right_code(server: RestServer) -> None:
    request = predict_request(np.zeros((1, 64), np.float32), model="m" * 100_000)
    with pytest.raises(grpc.RpcError) as caught:
        server.predict_stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()
    assert "more characters cut" in caught.value.details()
    request = predict_request(np.zeros((1, 64), np.float32), signature="s" * 1_000_000)
    with pytest.raises(grpc.RpcError) as caught:
        server.predict_stub.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    assert len(caught.value.details()) < 4096


def test_the_server_log_has_no_traceback_from_any_of_it(server: RestServer) -> None:
    """Last in the module: everything above was client input."""
    log = server.log_text()
    assert "Traceback" not in log and "request_failed" not in log, log[-3000:]
