"""The data-plane transport between front-ends and the engine (adapters/ipc).

Messages are checked in-process; everything else runs against a real echo engine process
(tests/util/ipc_echo.py) over a real ipc:// socket.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from pyserving.adapters.ipc import ClientOptions, EngineClient
from pyserving.adapters.ipc.messages import (
    ENCODER,
    REPLIES_DECODER,
    Reply,
    Request,
    TensorHeader,
    TransportError,
    decode_tensors,
    frames_of,
)
from pyserving.api.serving_loop import EVENT_LOOPS
from pyserving.engine.errors import Code, ServingError
from tests.util.ipc_echo import ipc_address, spawn_echo_engine, with_client

ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "f16": np.array([1.5, -2.0], dtype=np.float16),
    "bool": np.array([[True, False]]),
    "i8": np.array([-128, 127], dtype=np.int8),
    "u64": np.array([2**64 - 1], dtype=np.uint64),
    "c64": np.array([1 + 2j], dtype=np.complex64),
    "scalar": np.float64(3.25),
    "empty": np.zeros((0, 3), dtype=np.int32),
    "strided": np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2],
    "big_endian": np.array([1, 2], dtype=">i4"),
    "strings": np.array([[b"a", b""], [b"\xff\x00", b"long" * 100]], dtype=object),
}


def assert_same(got: dict[str, np.ndarray], sent: dict[str, np.ndarray]) -> None:
    assert set(got) == set(sent)
    for name, value in sent.items():
        expected = np.asarray(value)
        assert got[name].dtype == expected.dtype, name
        assert got[name].shape == expected.shape, name
        assert got[name].tolist() == expected.tolist(), name


def test_tensors_cross_as_their_own_bytes() -> None:
    headers, frames = frames_of(ARRAYS)
    buffers = [bytearray(memoryview(frame).cast("B")) for frame in frames]
    got = decode_tensors(headers, buffers)
    assert_same(got, ARRAYS)
    assert not got["f32"].flags.writeable  # views of the received buffer, not copies
    assert np.shares_memory(got["f32"], np.frombuffer(buffers[0], np.uint8))
    assert np.shares_memory(frames[0], ARRAYS["f32"])  # sent from the array's own memory


@pytest.mark.parametrize(
    ("header", "frames", "error"),
    [
        (TensorHeader("x", "<f4", (3,)), [b"\0" * 8], "8 bytes for shape"),
        (TensorHeader("x", "<f4", (2,)), [], "fewer frames"),
        (TensorHeader("x", "<f4", (2,)), [b"\0" * 8, b""], "frames beyond"),
        (TensorHeader("x", "|O", (1,)), [b"\0" * 8], "is not raw"),
        (TensorHeader("x", "nonsense", (1,)), [b"\0"], "unknown dtype"),
        (TensorHeader("x", "<f4", (-1,)), [b""], "negative dimension"),
        (
            TensorHeader("x", "bytes", (2,)),
            [np.array([1, 1], "<u8").tobytes(), b"a"],
            "do not add up",
        ),
        (TensorHeader("x", "<f4", (2,), segment="psm_x", nbytes=8), [], "shared memory"),
    ],
)
def test_malformed_messages_are_refused(header: TensorHeader, frames: list, error: str) -> None:
    with pytest.raises(TransportError, match=error):
        decode_tensors([header], frames)


def test_objects_other_than_bytes_do_not_cross() -> None:
    with pytest.raises(TypeError, match="only as bytes"):
        frames_of({"x": np.array(["text", 1], dtype=object)})


@pytest.fixture
def address() -> Iterator[str]:
    with ipc_address() as address:
        yield address


@pytest.fixture
def engine(address: str) -> Iterator[subprocess.Popen[str]]:
    process = spawn_echo_engine(address)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("event_loop", EVENT_LOOPS)
def test_many_concurrent_requests_share_one_socket(address: str, event_loop: str) -> None:
    """On both loops the server can serve on (engine and front-end alike)."""
    engine = spawn_echo_engine(address, event_loop)

    async def body(client: EngineClient) -> None:
        async def one(index: int) -> None:
            tensors = {
                "x": np.full((index % 7 + 1, 3), index, dtype=np.float32),
                "label": np.array([str(index).encode()], dtype=object),
            }
            # Answers come back out of order: later requests sleep less.
            params = {"index": index, "seconds": (300 - index) / 30000}
            answer = await client.call("sleep", params, tensors, timeout_s=10)
            assert answer.params == params
            assert_same(answer.tensors, tensors)

        await asyncio.gather(*(one(index) for index in range(300)))
        assert client.pending == 0
        assert client.counts.sent == 300

    try:
        with_client(address, body, event_loop=event_loop)
    finally:
        engine.kill()
        engine.wait()


def test_every_dtype_crosses_unchanged(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        answer = await client.call("echo", {"nested": {"a": [1, 2.5, "x", None]}}, ARRAYS)
        assert answer.params == {"nested": {"a": [1, 2.5, "x", None]}}
        assert_same(answer.tensors, ARRAYS)

    with_client(address, body)


def test_errors_carry_their_code_and_message(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        failing = [
            ("fail", {"code": "NOT_FOUND", "message": "no model m"}, Code.NOT_FOUND, "no model m"),
            ("crash", {}, Code.INTERNAL, "crashed on purpose"),
            ("absent", {}, Code.UNIMPLEMENTED, "no method 'absent'"),
        ]
        for method, params, code, message in failing:
            with pytest.raises(ServingError) as caught:
                await client.call(method, params)
            assert caught.value.code == code
            assert message in caught.value.message
        answer = await client.call("echo", {"still": "serving"})  # the socket survives them
        assert answer.params == {"still": "serving"}

    with_client(address, body)


def test_the_engine_enforces_the_deadline(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        with pytest.raises(ServingError) as caught:
            await client.call("sleep", {"seconds": 30}, timeout_s=0.2)
        assert caught.value.code == Code.DEADLINE_EXCEEDED
        assert "in the engine" in caught.value.message  # the engine's reply, not the backstop
        assert client.counts.late_replies == 0

    with_client(address, body)


def test_the_front_end_gives_up_when_the_engine_cannot_answer(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        with pytest.raises(ServingError) as caught:
            await client.call("block", {"seconds": 1.0}, timeout_s=0.1)
        assert caught.value.code == Code.DEADLINE_EXCEEDED
        assert "waiting for the engine" in caught.value.message
        # The engine answers the blocked call first, then this one: the late reply is dropped.
        assert (await client.call("echo", {"n": 1})).params == {"n": 1}
        assert client.counts.late_replies == 1

    with_client(address, body)


def test_a_killed_engine_fails_pending_requests_with_unavailable(address: str) -> None:
    engine = spawn_echo_engine(address)

    async def body(client: EngineClient) -> None:
        nonlocal engine
        pending = [asyncio.ensure_future(client.call("sleep", {"seconds": 600})) for _ in range(20)]
        await client.call("echo")  # the engine has received them all
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait()
        # No deadline on them: only noticing the dead engine can end them (the bound is a hang
        # guard, far beyond the few ms it takes).
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 30)
        assert [getattr(r, "code", r) for r in results] == [Code.UNAVAILABLE] * 20
        with pytest.raises(ServingError) as caught:
            await client.call("echo")
        assert caught.value.code == Code.UNAVAILABLE
        assert client.counts.disconnects == 1
        engine = spawn_echo_engine(address)  # a new engine: the front-end reconnects
        await client.wait_connected(30)
        assert (await client.call("echo", {"back": True})).params == {"back": True}

    try:
        with_client(address, body)
    finally:
        engine.kill()
        engine.wait()


def test_connecting_to_no_engine_is_unavailable(address: str) -> None:
    async def run() -> None:
        client = EngineClient(address)
        try:
            with pytest.raises(ServingError) as caught:
                await client.connect(timeout_s=0.3)
            assert caught.value.code == Code.UNAVAILABLE
            with pytest.raises(ServingError, match="not connected"):
                await client.call("echo")
        finally:
            await client.close()

    asyncio.run(run())


def shm_names() -> set[str]:
    return set(os.listdir("/dev/shm"))


def test_large_tensors_cross_through_reused_shared_memory(address: str, engine: object) -> None:
    before = shm_names()
    threshold = 4096
    small = np.arange(threshold // 8 - 1, dtype=np.float64)
    rng = np.random.default_rng(0)

    async def body(client: EngineClient) -> None:
        for round_ in range(20):
            large = rng.random((64, 70))  # 35,840 bytes
            answer = await client.call("echo", {}, {"large": large, "small": small + round_})
            assert_same(answer.tensors, {"large": large, "small": small + round_})
        assert client.counts.shm_tensors == 20  # only the large ones
        assert client.shm_segments == 1  # one segment, lent and given back 20 times
        # Concurrent requests each get their own segment: no answer sees another's bytes.
        sent = [rng.random(5000) for _ in range(16)]
        answers = await asyncio.gather(*(client.call("echo", {}, {"x": x}) for x in sent))
        for answer, x in zip(answers, sent, strict=True):
            np.testing.assert_array_equal(answer.tensors["x"], x)
        assert 1 < client.shm_segments <= 16
        assert len(shm_names() - before) == client.shm_segments

    with_client(address, body, ClientOptions(shm_threshold=threshold))
    assert shm_names() - before == set()  # closing the front-end unlinks its segments


def test_without_shared_memory_large_tensors_cross_as_frames(
    address: str, engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file-size limit on the server (EFBIG) or a full /dev/shm: the request still goes."""
    from pyserving.adapters.ipc import shared_memory

    def refused(**kwargs: object) -> None:
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(shared_memory, "SharedMemory", refused)
    large = np.random.default_rng(0).random((64, 70))

    async def body(client: EngineClient) -> None:
        for _ in range(3):
            answer = await client.call("echo", {}, {"large": large})
            assert_same(answer.tensors, {"large": large})
        assert (client.counts.shm_tensors, client.shm_segments) == (0, 0)

    with_client(address, body, ClientOptions(shm_threshold=4096))


def test_a_segment_is_not_reused_while_the_engine_may_read_it(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        first = np.full(2048, 1.0)
        with pytest.raises(ServingError):  # the engine holds it past the deadline
            await client.call("block", {"seconds": 0.5}, {"x": first}, timeout_s=0.05)
        second = np.full(2048, 2.0)
        answer = await client.call("echo", {}, {"x": second})
        np.testing.assert_array_equal(answer.tensors["x"], second)
        assert client.shm_segments == 2  # the first was still lent when the second was sent
        assert client.counts.late_replies == 1
        third = await client.call("echo", {}, {"x": np.full(2048, 3.0)})
        assert third.tensors["x"][0] == 3.0
        assert client.shm_segments == 2  # the late reply gave the first one back

    with_client(address, body, ClientOptions(shm_threshold=4096))


def test_segments_of_an_unloaded_shm_option_are_none(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        large = np.zeros(1 << 18)
        answer = await client.call("echo", {}, {"x": large})
        np.testing.assert_array_equal(answer.tensors["x"], large)
        assert client.counts.shm_tensors == 0
        assert client.shm_segments == 0

    with_client(address, body, ClientOptions(shm_threshold=None))


def test_ipc_paths_fit(address: str) -> None:
    assert len(Path(address.removeprefix("ipc://")).as_posix()) < 100


def test_each_front_end_gets_its_own_answers(address: str, engine: object) -> None:
    async def run() -> None:
        clients = [EngineClient(address) for _ in range(3)]
        for client in clients:
            await client.connect()
        try:

            async def one(client_index: int, index: int) -> None:
                client = clients[client_index]
                params = {"front_end": client_index, "index": index, "seconds": 0.001}
                answer = await client.call("sleep", params, {"x": np.array([index])}, timeout_s=10)
                assert answer.params == params
                assert answer.tensors["x"].tolist() == [index]

            await asyncio.gather(*(one(c, i) for c in range(3) for i in range(100)))
            assert [client.counts.sent for client in clients] == [100, 100, 100]
        finally:
            for client in clients:
                await client.close()

    asyncio.run(run())


def test_the_engine_refuses_malformed_requests_and_keeps_serving(
    address: str, engine: object
) -> None:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 30_000)  # a hang guard: the replies come at once
    socket.connect(address)

    def replies() -> list[Reply]:
        frames = socket.recv_multipart()
        batch = REPLIES_DECODER.decode(frames[0])
        assert sum(reply.frames for reply in batch) == len(frames) - 1
        return batch

    try:
        socket.send_multipart([b"\xc1 not msgpack"])  # no id to answer: dropped, logged
        lost = Request(6, "echo", None, {}, [TensorHeader("x", "<f4", (4,))], frames=2)
        socket.send_multipart([ENCODER.encode([lost]), b"\0" * 16])  # frames do not add up
        short = Request(7, "echo", None, {}, [TensorHeader("x", "<f4", (4,))], frames=1)
        socket.send_multipart([ENCODER.encode([short]), b"\0" * 8])
        [reply] = replies()
        assert (reply.id, reply.code) == (7, "INTERNAL")
        assert "malformed request" in reply.message and "8 bytes for shape" in reply.message
        good = Request(8, "echo", None, {"ok": 1}, [])
        socket.send_multipart([ENCODER.encode([good])])
        [reply] = replies()
        assert (reply.id, reply.code, reply.params) == (8, "OK", {"ok": 1})
    finally:
        socket.close()


def test_one_turns_requests_cross_as_one_message(address: str, engine: object) -> None:
    """Requests made in one turn of the loop share a message, and each still gets its own
    tensors back: the batch's frames are split by each request's count."""

    async def body(client: EngineClient) -> None:
        values = [np.full(3 + i, i, np.float32) for i in range(64)]
        answers = await asyncio.gather(
            *(client.call("echo", {"i": i}, {"x": v}) for i, v in enumerate(values))
        )
        for i, (value, answer) in enumerate(zip(values, answers, strict=True)):
            assert answer.params == {"i": i}
            np.testing.assert_array_equal(answer.tensors["x"], value)
        assert client.counts.sent == 64
        assert client.counts.messages < 64, client.counts

    with_client(address, body)


def test_a_refused_tensor_gives_its_requests_segments_back(address: str, engine: object) -> None:
    async def body(client: EngineClient) -> None:
        large = np.ones(1024)
        with pytest.raises(TypeError, match="only as bytes"):
            await client.call("echo", {}, {"large": large, "bad": np.array([1], dtype=object)})
        assert client.pending == 0
        answer = await client.call("echo", {}, {"large": large})
        np.testing.assert_array_equal(answer.tensors["large"], large)
        assert client.shm_segments == 1  # the refused request's segment was reused

    with_client(address, body, ClientOptions(shm_threshold=4096))
