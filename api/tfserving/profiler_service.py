"""`tensorflow.ProfilerService` on the gRPC port, as TF Serving serves it (--enable_profiler,
on by default as there).

TF Serving registers TSL's ProfilerServiceImpl (profiler_service_impl.cc) on its gRPC
server, so TensorBoard's "Capture profile" and `tf.profiler.experimental.client.trace`
work against the serving port; the client calls `/tensorflow.ProfilerService/Profile`.
The installed TensorFlow has no Python class for that service or its messages, but it has
the profiler session itself (`_pywrap_profiler.ProfilerSession`, what
`tf.profiler.experimental.start` runs), so the service is served here, in this process:

- Profile: a ProfilerSession with the request's ProfileOptions (tracer levels; its start
  waits for `opts.start_timestamp_ns`), kept `opts.duration_ms`, ended early by a
  Terminate for the request's `session_id`, CANCELLED if the client goes away; then its
  XSpace is written to `repository_root/session_id/host_name.xplane.pb` (':' → '_') and
  the reply says `empty_trace` when no line of it holds an event (CollectDataToRepository,
  SaveXSpace, IsEmpty). TensorFlow allows one session at a time: another Profile meanwhile
  gets INTERNAL "Another profiling session active.", as from TF Serving.
- Terminate: marks the session to stop. Monitor: UNIMPLEMENTED, as TSL's.

No other port is opened (TensorFlow's own profiler server listens on every interface).
The messages are read and written on the wire here (their field numbers are TSL's
profiler_service.proto); ProfileOptions is TensorFlow's own Python class.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

SERVICE_NAME = "tensorflow.ProfilerService"
_PREFIX = f"/{SERVICE_NAME}/"
XPLANE_SUFFIX = ".xplane.pb"

# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def wire_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a serialized message, in order: ints for
    varints, bytes for length-delimited fields; fixed-width fields are skipped. Strings
    are not decoded, so an XSpace's non-UTF-8 names read as well as anything else."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire_type == _BYTES:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, data[pos : pos + size]
            pos += size
        elif wire_type == _FIXED64:
            pos += 8
        elif wire_type == _FIXED32:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def _submessages(data: bytes, number: int) -> Iterator[bytes]:
    for field, value in wire_fields(data):
        if field == number and isinstance(value, bytes):
            yield value


def xspace_is_empty(xspace: bytes) -> bool:
    """IsEmpty(XSpace): no event on any line of any plane (planes 1, lines 3, events 4)."""
    for plane in _submessages(xspace, 1):
        for line in _submessages(plane, 3):
            for _ in _submessages(line, 4):
                return False
    return True


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class ProfileRequest:
    """The fields of tensorflow.ProfileRequest that Profile reads (1, 4, 5, 6, 7)."""

    def __init__(self, data: bytes) -> None:
        from tensorflow.tsl.profiler.protobuf import profiler_options_pb2

        self.duration_ms = 0
        self.opts = profiler_options_pb2.ProfileOptions()
        self.repository_root = self.session_id = self.host_name = ""
        for number, value in wire_fields(data):
            if number == 1 and isinstance(value, int):
                self.duration_ms = value
            elif number == 4 and isinstance(value, bytes):
                self.opts.MergeFromString(value)
            elif isinstance(value, bytes) and number in (5, 6, 7):
                text = value.decode("utf-8", "replace")
                name = {5: "repository_root", 6: "session_id", 7: "host_name"}[number]
                setattr(self, name, text)


def profile_response(empty_trace: bool) -> bytes:
    """tensorflow.ProfileResponse with only empty_trace (7) set, as CollectDataToRepository."""
    return _encode_varint(7 << 3 | _VARINT) + b"\x01" if empty_trace else b""


def terminate_session_id(data: bytes) -> str:
    for number, value in wire_fields(data):
        if number == 1 and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return ""


def xplane_path(request: ProfileRequest) -> str:
    """SaveXSpace's file: <repository_root>/<session_id>/<host_name>.xplane.pb, ':' → '_'."""
    name = (request.host_name + XPLANE_SUFFIX).replace(":", "_")
    return os.path.join(request.repository_root, request.session_id, name)


def _session_options(opts: Any) -> dict[str, int]:
    """The tracer levels the Python ProfilerSession takes (ProfilerOptions' names); a
    version-0 ProfileOptions means TSL's defaults (host 2, device 1, python 0)."""
    if getattr(opts, "version", 0) == 0:
        return {"host_tracer_level": 2, "device_tracer_level": 1, "python_tracer_level": 0}
    return {
        "host_tracer_level": int(opts.host_tracer_level),
        "device_tracer_level": int(opts.device_tracer_level),
        "python_tracer_level": int(opts.python_tracer_level),
    }


class _Session:
    """TensorFlow's ProfilerSession, exporting to a folder of its own: its `stop()` returns
    trace events, not the XSpace, which only `export_to_tb()` writes (as
    <logdir>/plugins/profile/<run>/<hostname>.xplane.pb)."""

    def __init__(self, opts: object) -> None:
        from tensorflow.python.profiler.internal import _pywrap_profiler

        self._logdir = tempfile.mkdtemp(prefix="pyserving-profile-")
        self._session = _pywrap_profiler.ProfilerSession()
        try:
            self._session.start(self._logdir, _session_options(opts))
        except BaseException:
            shutil.rmtree(self._logdir, ignore_errors=True)
            raise

    def discard(self) -> None:
        try:
            self._session.stop()
        finally:
            shutil.rmtree(self._logdir, ignore_errors=True)

    def collect(self, request: ProfileRequest) -> bool:
        """Write the XSpace where SaveXSpace writes it; whether it is empty (IsEmpty)."""
        try:
            self._session.export_to_tb()
            (exported,) = Path(self._logdir).rglob("*" + XPLANE_SUFFIX)
            xspace = exported.read_bytes()
        finally:
            shutil.rmtree(self._logdir, ignore_errors=True)
        path = xplane_path(request)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(xspace)
        return xspace_is_empty(xspace)


class ProfilerService(grpc.GenericRpcHandler):
    """Profile, Terminate and Monitor of tensorflow.ProfilerService, bytes in and out."""

    POLL_S = 0.001  # TSL checks for cancellation and Terminate every millisecond

    def __init__(self) -> None:
        self._stopped: set[str] = set()  # session ids a Terminate asked to end

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        if not method.startswith(_PREFIX):
            return None
        handler = {
            "Profile": self._profile,
            "Terminate": self._terminate,
            "Monitor": self._monitor,
        }.get(method.removeprefix(_PREFIX))
        if handler is None:
            return None
        return grpc.unary_unary_rpc_method_handler(handler)  # bytes in, bytes out

    async def _profile(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            request = ProfileRequest(data)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad ProfileRequest: {exc}")
            raise AssertionError("unreachable") from None
        delay_s = request.opts.start_timestamp_ns / 1e9 - time.time()
        if delay_s > 0:  # ProfilerSession's constructor sleeps until the start time
            await asyncio.sleep(delay_s)
        try:
            session = await asyncio.to_thread(_Session, request.opts)
        except Exception as exc:  # AlreadyExistsError: "Another profiling session active."
            await context.abort(grpc.StatusCode.INTERNAL, getattr(exc, "message", str(exc)))
            raise AssertionError("unreachable") from None
        try:
            deadline = time.monotonic() + request.opts.duration_ms / 1000
            while time.monotonic() < deadline:
                await asyncio.sleep(self.POLL_S)
                if request.session_id in self._stopped:
                    self._stopped.discard(request.session_id)
                    break
        except asyncio.CancelledError:  # the client went away: drop the session's data
            await asyncio.to_thread(session.discard)
            raise
        try:
            empty = await asyncio.to_thread(session.collect, request)
        except (OSError, ValueError) as exc:  # not written, or not one XSpace file exported
            await context.abort(grpc.StatusCode.INTERNAL, str(exc))
            raise AssertionError("unreachable") from None
        return profile_response(empty)

    async def _terminate(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self._stopped.add(terminate_session_id(data))
        return b""  # TerminateResponse {}

    async def _monitor(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "unimplemented.")
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Nothing held between calls: a running Profile ends with its call."""


def add_to_server(server: grpc.aio.Server) -> ProfilerService:
    service = ProfilerService()
    server.add_generic_rpc_handlers((service,))
    return service
