"""`tensorflow.ProfilerService` on the gRPC port, as TF Serving serves it (--enable_profiler).

TF Serving registers TensorFlow's own ProfilerService implementation on its gRPC server,
so TensorBoard's "Capture profile" and `tf.profiler.experimental.client.trace` work
against the serving port. The installed TensorFlow offers that implementation only as a
gRPC server of its own (`tf.profiler.experimental.server.start(port)`), and its wheel has
no Python classes for ProfileRequest/ProfileResponse. So pyserving starts TensorFlow's
server once per process on a free port and forwards each `/tensorflow.ProfilerService/*`
call from the serving port to it as raw bytes: TensorFlow's code runs the session,
collects the trace of this process's TensorFlow work and writes the `.xplane.pb` under the
request's log dir, and its errors (e.g. "No trace event was collected ...") reach the
client unchanged.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Awaitable, Callable

import grpc

SERVICE_NAME = "tensorflow.ProfilerService"
_PREFIX = f"/{SERVICE_NAME}/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def tensorflow_profiler_target() -> str:
    """TensorFlow's profiler gRPC server, started once: TensorFlow allows one per process."""
    import tensorflow as tf

    port = _free_port()
    tf.profiler.experimental.server.start(port)
    return f"127.0.0.1:{port}"


class ProfilerForwarder(grpc.GenericRpcHandler):
    """Every ProfilerService method, passed through to TensorFlow's server byte for byte."""

    def __init__(self, target: str) -> None:
        self.target = target  # TensorFlow's own server: it listens on every interface
        self._channel: grpc.aio.Channel | None = None

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if not method.startswith(_PREFIX):
            return None
        return grpc.unary_unary_rpc_method_handler(self._forwarding(method))  # bytes in, out

    def _forwarding(
        self, method: str
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if self._channel is None:  # made on the server's event loop
                self._channel = grpc.aio.insecure_channel(
                    self.target,
                    options=[
                        ("grpc.max_receive_message_length", -1),
                        ("grpc.max_send_message_length", -1),
                    ],
                )
            call = self._channel.unary_unary(method)
            try:
                return await call(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise AssertionError("unreachable") from None  # abort raises

        return forward

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def add_to_server(server: grpc.aio.Server) -> ProfilerForwarder:
    forwarder = ProfilerForwarder(tensorflow_profiler_target())
    server.add_generic_rpc_handlers((forwarder,))
    return forwarder
