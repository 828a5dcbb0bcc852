"""The engine's end of the data plane: one ROUTER socket that every front-end's DEALER meets.

Each request becomes a task, so a slow call never holds up the others on the socket; its
reply goes back to the front-end that sent it (ZeroMQ's routing identity) with the request's
id, in one message with every other reply to that front-end finished in the same turn of
the loop (messages.py: batches). The engine enforces the request's deadline itself (the
handler is cancelled and the reply says DEADLINE_EXCEEDED), and every failure becomes a
reply with a code: a handler's ServingError keeps its code and message, anything else is
INTERNAL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import numpy as np
import structlog
import zmq

from pyserving.adapters.ipc.messages import (
    OK,
    REQUESTS_DECODER,
    STRING,
    Outbox,
    Reply,
    Request,
    TransportError,
    decode_tensors,
    frames_of,
    split_frames,
)
from pyserving.adapters.ipc.shared_memory import SegmentMaps
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.off_loop import off_loop_if_big

log = structlog.get_logger("pyserving.ipc")


@dataclass(frozen=True)
class Call:
    """One request as the engine's handler sees it. Its tensors are read-only views of the
    received buffers (or a front-end's shared memory): valid until the handler returns."""

    method: str
    params: dict[str, Any]
    tensors: dict[str, np.ndarray]
    timeout_s: float | None


@dataclass(frozen=True)
class Answer:
    params: dict[str, Any] = field(default_factory=dict)
    tensors: Mapping[str, np.ndarray] = field(default_factory=dict)


Handler = Callable[[Call], Awaitable[Answer]]


def drain(socket: zmq.Socket[Any], handle: Callable[[list[Any]], None]) -> None:
    """Hand every queued message to `handle`. ZeroMQ's descriptor signals that its state
    changed, not that a message waits, and any call on the socket (a send too) may take
    that signal: so both ends drain after every send as well as when the loop wakes them."""
    # cheaper than a recv raising zmq.Again; ZMQ_EVENTS is an int (pyzmq's get says int|bytes)
    while cast(int, socket.get(zmq.EVENTS)) & zmq.POLLIN:
        handle(socket.recv_multipart(zmq.NOBLOCK, copy=False))


def configure(socket: zmq.Socket[Any]) -> None:
    """Options both ends share: nothing lingers at close, no high-water mark drops or blocks
    a request, and ZMTP heartbeats notice a peer that stops answering (one that dies is
    noticed at once, from its closed socket)."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)


class EngineEndpoint:
    """Serves `handler` to every front-end that connects to `address` (ipc:// or tcp://)."""

    def __init__(self, address: str, handler: Handler) -> None:
        self.address = address
        self._handler = handler
        # A plain socket whose descriptor the event loop watches (see `_drain`): no future
        # per message, and a ROUTER's send never blocks.
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        configure(self._socket)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 0)  # a gone front-end's reply is dropped
        self._maps = SegmentMaps()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outboxes: dict[bytes, Outbox] = {}  # by front-end, until the turn's send
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Bind and serve on the running event loop."""
        self._socket.bind(self.address)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._socket.FD, self._drain)
        self._drain()

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._socket.FD)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._socket.close(linger=0)
        self._context.term()
        self._maps.close()

    def _drain(self) -> None:
        drain(self._socket, self._dispatch)

    def _dispatch(self, frames: list[Any]) -> None:
        if len(frames) < 2:
            return
        try:
            requests = REQUESTS_DECODER.decode(frames[1].buffer)
            own_frames = split_frames(requests, frames[2:])
        except (msgspec.DecodeError, TransportError) as error:  # no id to answer: a bug
            log.error("ipc_undecodable_request", error=str(error))
            return
        identity = frames[0].bytes
        for request, its_frames in zip(requests, own_frames, strict=True):
            task = asyncio.create_task(self._answer(identity, request, its_frames))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, identity: bytes, request: Request, frames: Sequence[Any]) -> None:
        out_frames: list[Any] = []
        try:
            answer = await self._call(request, frames)
            headers, out_frames = frames_of(answer.tensors)
            reply = Reply(request.id, OK, "", answer.params, headers, len(out_frames))
        except ServingError as error:
            reply = Reply(request.id, error.code.name, error.message, {}, [])
        except TransportError as error:
            reply = Reply(request.id, Code.INTERNAL.name, f"malformed request: {error}", {}, [])
        except Exception as error:
            log.exception("ipc_handler_failed", method=request.method)
            reply = Reply(request.id, Code.INTERNAL.name, f"engine error: {error!r}", {}, [])
        outbox = self._outboxes.get(identity)
        if outbox is None:
            outbox = self._outboxes[identity] = Outbox()
        if outbox.add(reply, out_frames) and self._loop is not None:
            self._loop.call_soon(self._send, identity)

    def _send(self, identity: bytes) -> None:
        """One message with the turn's replies to one front-end."""
        outbox = self._outboxes.pop(identity, None)
        if outbox is None or self._socket.closed:
            return
        message, _ = outbox.take()
        self._socket.send_multipart([identity, *message], copy=False)
        self._drain()

    async def _decode(self, request: Request, frames: Sequence[Any]) -> dict[str, np.ndarray]:
        """The request's tensors: numbers are views (no work), but strings are made one
        object each, so many of them (a million: ~0.3 s) are made on a thread, as the
        codecs do, while the loop answers every front-end's other requests."""
        headers = request.tensors
        if any(h.segment for h in headers) or not any(h.dtype == STRING for h in headers):
            return decode_tensors(headers, frames, self._maps)  # the maps are the loop's
        size = sum(len(frame.buffer if hasattr(frame, "buffer") else frame) for frame in frames)
        return await off_loop_if_big(size, decode_tensors, headers, frames)

    async def _call(self, request: Request, frames: Sequence[Any]) -> Answer:
        tensors = await self._decode(request, frames)
        call = Call(request.method, request.params, tensors, request.timeout_s)
        if request.timeout_s is None:
            return await self._handler(call)
        if request.timeout_s <= 0:
            raise ServingError(Code.DEADLINE_EXCEEDED, "deadline exceeded before the engine")
        deadline = asyncio.timeout(request.timeout_s)
        try:
            async with deadline:
                return await self._handler(call)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise ServingError(
                Code.DEADLINE_EXCEEDED,
                f"deadline exceeded in the engine ({request.timeout_s:.3g} s left at the call)",
            ) from None
