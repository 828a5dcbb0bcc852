"""A front-end's end of the data plane: one DEALER socket to the engine, shared by every
request the front-end has in flight (each carries an id; replies may come in any order).
The requests made in one turn of the event loop go to the engine as one message
(messages.py: batches).

Failures are errors with gRPC's codes, never hangs: a request's own deadline ends its wait
(DEADLINE_EXCEEDED; the engine enforces the same deadline and normally answers first), and
when the engine's socket goes away (the engine died, or stopped answering heartbeats) every
pending request fails with UNAVAILABLE at once, as does every request sent until it is back.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import parse_monitor_message

from pyserving.adapters.ipc.engine_side import Answer, configure, drain
from pyserving.adapters.ipc.messages import (
    OK,
    RAW_KINDS,
    REPLIES_DECODER,
    Outbox,
    Reply,
    Request,
    TensorHeader,
    TransportError,
    decode_tensors,
    split_frames,
    tensor_frames,
)
from pyserving.adapters.ipc.shared_memory import SHM_THRESHOLD, SegmentPool
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.off_loop import OFF_LOOP_BYTES


@dataclass(frozen=True)
class ClientOptions:
    # Request tensors of at least this many bytes go through shared memory; None: never.
    shm_threshold: int | None = SHM_THRESHOLD
    # How long past a request's deadline the front-end waits for the engine's own
    # DEADLINE_EXCEEDED before it gives up by itself (the engine's loop may be busy).
    deadline_grace_s: float = 0.1


@dataclass
class ClientCounts:
    """What this front-end's transport did, for tests and the bench."""

    sent: int = 0  # requests
    messages: int = 0  # the messages that carried them (one per turn of the loop)
    shm_tensors: int = 0
    late_replies: int = 0  # replies that came after their request gave up
    disconnects: int = 0


class EngineClient:
    """Calls the engine at `address`. Create, `await connect()`, `await call(...)` from any
    number of tasks on one event loop, `await close()`."""

    def __init__(self, address: str, options: ClientOptions | None = None) -> None:
        self.address = address
        self.options = options or ClientOptions()
        self.counts = ClientCounts()
        # Plain sockets whose descriptors the event loop watches (see `_drain`): no future per
        # message, and a send that cannot go at once fails (UNAVAILABLE) rather than waits.
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        configure(self._socket)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a live connection
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self._monitor = self._socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        )
        threshold = self.options.shm_threshold
        self._pool = SegmentPool(threshold) if threshold is not None else None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Answer], list[SharedMemory]]] = {}
        self._lent: dict[int, list[SharedMemory]] = {}  # given up on, the engine may still read
        self._outbox = Outbox()  # this turn's requests, sent as one message by `_send`
        self._connected = asyncio.Event()
        self.disconnected = asyncio.Event()  # set while a connection once made is lost
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def shm_segments(self) -> int:
        return 0 if self._pool is None else self._pool.segments

    async def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and wait until the engine has answered ZeroMQ's handshake."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._monitor.FD, self._watch)
        self._loop.add_reader(self._socket.FD, self._drain)
        self._socket.connect(self.address)
        self._watch()
        await self.wait_connected(timeout_s)

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the engine is connected (again: ZeroMQ reconnects by itself)."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            raise ServingError(
                Code.UNAVAILABLE, f"no engine answered at {self.address} within {timeout_s} s"
            ) from None

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._monitor.FD)
            self._loop.remove_reader(self._socket.FD)
        self._fail_all(ServingError(Code.UNAVAILABLE, "the front-end's transport closed"))
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        self._context.term()
        if self._pool is not None:
            self._pool.close()

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        """One request and its answer; raises ServingError with the engine's code, or
        UNAVAILABLE / DEADLINE_EXCEEDED from the transport."""
        if not self._connected.is_set():
            raise ServingError(Code.UNAVAILABLE, f"the engine at {self.address} is not connected")
        request_id = next(self._ids)
        headers, frames, segments = await self._frames(tensors or {})
        request = Request(request_id, method, timeout_s, dict(params or {}), headers, len(frames))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending[request_id] = (future, segments)
        if self._outbox.add(request, frames):
            loop.call_soon(self._send)
        try:
            if timeout_s is None:
                return await future
            wait = max(timeout_s, 0) + self.options.deadline_grace_s
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            raise ServingError(
                Code.DEADLINE_EXCEEDED, f"deadline exceeded waiting for the engine ({timeout_s} s)"
            ) from None
        finally:
            entry = self._pending.pop(request_id, None)
            if entry is not None and entry[1]:  # gave up first: hold its segments until a reply
                self._lent[request_id] = entry[1]

    async def _frames(
        self, tensors: Mapping[str, np.ndarray]
    ) -> tuple[list[TensorHeader], list[Any], list[SharedMemory]]:
        """`_tensor_frames`, on a thread when the tensors are big: copying 100 MB into a
        segment, or joining a million strings, must not stall the loop's other requests."""
        size = sum(np.asarray(value).nbytes for value in tensors.values())
        if size < OFF_LOOP_BYTES:
            return self._tensor_frames(tensors)
        work = asyncio.ensure_future(asyncio.to_thread(self._tensor_frames, tensors))

        def give_back(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._release(done.result()[2])

        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:  # the request is gone: its segments go back when made
            work.add_done_callback(give_back)
            raise

    def _tensor_frames(
        self, tensors: Mapping[str, np.ndarray]
    ) -> tuple[list[TensorHeader], list[Any], list[SharedMemory]]:
        headers: list[TensorHeader] = []
        frames: list[Any] = []
        segments: list[SharedMemory] = []
        try:
            self._fill(tensors, headers, frames, segments)
        except BaseException:
            self._release(segments)
            raise
        return headers, frames, segments

    def _fill(
        self,
        tensors: Mapping[str, np.ndarray],
        headers: list[TensorHeader],
        frames: list[Any],
        segments: list[SharedMemory],
    ) -> None:
        for name, value in tensors.items():
            array = np.asarray(value)
            segment = None
            if self._pool is not None and array.dtype.kind in RAW_KINDS:
                segment = self._pool.lend(array.nbytes)
            if segment is None:
                header, parts = tensor_frames(name, array)
                headers.append(header)
                frames += parts
                continue
            view = np.ndarray(array.shape, array.dtype, buffer=segment.buf)
            view[...] = array
            del view  # no export of the segment's buffer may outlive the copy
            segments.append(segment)
            headers.append(
                TensorHeader(name, array.dtype.str, array.shape, segment.name, array.nbytes)
            )
            self.counts.shm_tensors += 1

    def _send(self) -> None:
        """One message with this turn's requests. If it cannot go at once (no connection:
        ZMQ_IMMEDIATE), each of its requests fails with UNAVAILABLE rather than waits."""
        if self._socket.closed:
            return
        message, requests = self._outbox.take()
        try:
            self._socket.send_multipart(message, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            error = ServingError(Code.UNAVAILABLE, f"the engine at {self.address} is not connected")
            for request in requests:
                self._fail(request.id, error)
            return
        self.counts.sent += len(requests)
        self.counts.messages += 1
        self._drain()

    def _fail(self, request_id: int, error: ServingError) -> None:
        entry = self._pending.pop(request_id, None)
        lent = self._lent.pop(request_id, None)
        if entry is not None:
            self._release(entry[1])
            if not entry[0].done():
                entry[0].set_exception(error)
        if lent is not None:
            self._release(lent)

    def _release(self, segments: list[SharedMemory]) -> None:
        if self._pool is not None:
            for segment in segments:
                self._pool.give_back(segment)

    def _drain(self) -> None:
        drain(self._socket, self._resolve)

    def _resolve(self, frames: list[Any]) -> None:
        try:
            replies = REPLIES_DECODER.decode(frames[0].buffer)
            own_frames = split_frames(replies, frames[1:])
        except Exception:  # the engine's bug; nothing to answer it with
            return
        for reply, its_frames in zip(replies, own_frames, strict=True):
            self._resolve_one(reply, its_frames)

    def _resolve_one(self, reply: Reply, frames: Sequence[Any]) -> None:
        entry = self._pending.pop(reply.id, None)
        if entry is None:
            self.counts.late_replies += 1
            self._release(self._lent.pop(reply.id, []))
            return
        future, segments = entry
        self._release(segments)
        if future.done():
            return
        if reply.code != OK:
            future.set_exception(ServingError(_code(reply.code), reply.message))
            return
        try:
            tensors = decode_tensors(reply.tensors, frames)
        except TransportError as error:
            future.set_exception(ServingError(Code.INTERNAL, f"malformed reply: {error}"))
            return
        future.set_result(Answer(reply.params, tensors))

    def _watch(self) -> None:
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected.set()
                self.disconnected.clear()
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._connected.clear()
                self.disconnected.set()
                self.counts.disconnects += 1
                self._fail_all(
                    ServingError(Code.UNAVAILABLE, f"the engine at {self.address} went away")
                )

    def _fail_all(self, error: ServingError) -> None:
        pending, self._pending = self._pending, {}
        for future, segments in pending.values():
            self._release(segments)
            if not future.done():
                future.set_exception(error)
        for segments in self._lent.values():
            self._release(segments)
        self._lent.clear()


def _code(name: str) -> Code:
    try:
        return Code[name]
    except KeyError:
        return Code.UNKNOWN
