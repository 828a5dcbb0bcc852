"""The request envelope's drain on a real grpc.aio server: calls being handled finish, new ones get
UNAVAILABLE, health keeps answering, and the gate reports when all is quiet."""

from __future__ import annotations

import asyncio

import grpc

from pyserving.api.envelope.request_envelope import Envelope, method_handler


def test_drain_finishes_handled_calls_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        gate = Envelope()
        release = asyncio.Event()
        entered = asyncio.Event()

        async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            entered.set()
            await release.wait()
            return b"done:" + request

        async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return b"serving"

        def identity(raw: bytes) -> bytes:
            return raw

        slow_handler = method_handler(gate, "/test.Slow/Call", slow, identity, identity)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("test.Slow", {"Call": slow_handler}),
                # health is not behind the envelope: it keeps answering while draining
                grpc.method_handlers_generic_handler(
                    "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Slow/Call")
            first = asyncio.ensure_future(call(b"1", timeout=10))
            await asyncio.wait_for(entered.wait(), 10)
            gate.start_draining()
            try:
                await call(b"2", timeout=10)
                raise AssertionError("a call after the drain began was run")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert "shutting down" in (exc.details() or "")
            health = channel.unary_unary("/grpc.health.v1.Health/Check")
            assert await health(b"", timeout=10) == b"serving"
            assert gate.active == 1
            assert not await gate.wait_quiet(timeout_s=0.3, quiet_s=0.1)  # still handling
            release.set()
            assert await first == b"done:1"
            assert await gate.wait_quiet(timeout_s=5, quiet_s=0.1)
            assert gate.active == 0
        await server.stop(grace=1)

    asyncio.run(scenario())
