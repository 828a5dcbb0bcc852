"""Reading a REST request's body without trusting the client that sends it.

Every REST route (TF Serving's /v1, the Open Inference Protocol's /v2, the repository
API) reads its body here, so each gets the same answers to a client's faults, and none
of them is a 500:

- a body over the limit: 413, refused unread when Content-Length says so;
- a body that arrives too slowly: 408, once `timeout_s` per started MiB announced (or
  received, when chunked) has passed, as nginx's client_body_timeout and uvicorn's
  timeouts close slow senders; a slow client never holds a slot for ever;
- a Content-Encoding pyserving cannot decode: 415 naming it; a body that is not what its
  Content-Encoding says: 400 naming the encoding;
- a client that goes away mid-body: CANCELLED (HTTP 499, nginx's code): the envelope's
  one `request_rejected` info line and no traceback, since nothing on the server failed.

Each of these leaves the rest of the body unread, so its response closes the connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError, TransferEncodingError

from pyserving.engine.errors import Code, ServingError, quoted
from pyserving.engine.request_core import PlanOptions

# Bodies this big arrive in one read where the client sends them at once.
_CHUNK = 1 << 16
_MIB = 1 << 20
# The Content-Encodings aiohttp decodes (br through the brotli package, a dependency).
DECODED_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "br"})
DEFAULT_BODY_TIMEOUT_S = 30.0
# What reading raises when the client went away mid-body (before HttpProcessingError,
# whose subclasses the first two are).
_DISCONNECTED = (
    ContentLengthError,
    TransferEncodingError,
    ConnectionError,
    asyncio.IncompleteReadError,
)


class BodyError(ServingError):
    """A client fault in the body: answered with `http_status`, the connection closed."""

    def __init__(self, code: Code, message: str, http_status: int) -> None:
        super().__init__(code, message)
        self.http_status = http_status


class BodyTooLarge(BodyError):
    """RESOURCE_EXHAUSTED (so counted as gRPC's would be), answered 413 Payload Too Large."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            Code.RESOURCE_EXHAUSTED,
            f"request body of {size} bytes is larger than the limit of {limit} bytes "
            "(--grpc_max_message_bytes); send fewer instances per request",
            413,
        )


def body_deadline_s(announced: int | None, timeout_s: float) -> float:
    """The time a body may take: `timeout_s` for each MiB it announced, started ones
    included (so at least `timeout_s`)."""
    return timeout_s * max(1, -(-(announced or 0) // _MIB))


async def read_body(
    request: web.Request, limit: int, timeout_s: float = DEFAULT_BODY_TIMEOUT_S
) -> bytes:
    """The body, decoded from its Content-Encoding; see the module docstring for faults."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in DECODED_ENCODINGS:
        raise BodyError(
            Code.INVALID_ARGUMENT,
            f"Content-Encoding {quoted(encoding, 100)!r} is not supported; send the body plain or "
            "as gzip, deflate or br",
            415,
        )
    announced = request.content_length
    if announced is not None and announced > limit:
        raise BodyTooLarge(announced, limit)
    content = request.content
    try:
        if content.is_eof():  # all of it arrived with the headers (a small body): no iterator
            body = content.read_nowait()
            _raise_stored(content)
            if len(body) > limit:
                raise BodyTooLarge(len(body), limit)
            return body
        return await _read_slowly(content, limit, announced, timeout_s)
    except web.RequestPayloadError as exc:  # aiohttp's wrapper of the parser's complaint
        raise _classified(exc.__cause__ or exc, encoding) from None
    except (*_DISCONNECTED, HttpProcessingError) as exc:
        raise _classified(exc, encoding) from None


def _classified(exc: BaseException, encoding: str) -> BodyError:
    """A disconnect (CANCELLED), or bytes that are not what Content-Encoding says (400)."""
    if isinstance(exc, _DISCONNECTED) or not isinstance(exc, HttpProcessingError):
        # The envelope's request_rejected line (code CANCELLED) is the one line it leaves.
        return BodyError(
            Code.CANCELLED, "the client closed the connection before the body was sent", 499
        )
    detail = str(getattr(exc, "message", "") or type(exc).__name__)
    return BodyError(
        Code.INVALID_ARGUMENT,
        f"the body could not be decoded as its Content-Encoding {encoding or 'identity'!r} "
        f"says ({quoted(detail, 100)}); send it plain or encode it so",
        400,
    )


async def _read_slowly(content: Any, limit: int, announced: int | None, timeout_s: float) -> bytes:
    chunks, size = [], 0
    allowed = body_deadline_s(announced, timeout_s)
    try:
        async with asyncio.timeout(allowed) as timer:
            async for chunk in content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(size, limit)
                chunks.append(chunk)
                if announced is None:  # chunked: each MiB received buys more time
                    when = timer.when()
                    if when is not None and size > _MIB * (allowed / timeout_s):
                        allowed += timeout_s
                        timer.reschedule(when + timeout_s)
            _raise_stored(content)
    except TimeoutError:
        raise BodyError(
            Code.DEADLINE_EXCEEDED,
            f"the body did not arrive in time: {size} bytes in {allowed:.0f} s "
            f"(--rest_body_timeout_seconds allows {timeout_s:g} s per MiB)",
            408,
        ) from None
    if announced is not None and size < announced:
        raise ConnectionResetError("body shorter than its Content-Length")
    return b"".join(chunks)


def _raise_stored(content: Any) -> None:
    """aiohttp stores a decoding or connection fault on the stream: raise it here."""
    stored = content.exception()
    if stored is not None:
        raise stored


def error_response(exc: ServingError, status: int, body: bytes, **kwargs: Any) -> web.Response:
    """The error reply; a body fault closes the connection (the rest was not read)."""
    response = web.Response(status=status, body=body, **kwargs)
    if isinstance(exc, BodyError):
        response.force_close()
    return response


CORS_HEADERS = {  # TF Serving's AddCORSHeaders
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
REQUEST_ID = "x-request-id"  # the header a client names its request by


@dataclass(frozen=True)
class RestOptions:
    """Both HTTP protocols' settings (TF Serving's /v1 and the Open Inference Protocol's
    /v2 share one port, one deadline and one bound on requests at once)."""

    timeout_s: float  # --rest_api_timeout_in_ms; 0 or less: no deadline
    max_body_bytes: int  # --grpc_max_message_bytes, for REST bodies too
    max_concurrent: int  # --rest_api_num_threads: requests processed at once; more wait
    cors: bool  # --rest_api_enable_cors_support
    plan_options: PlanOptions
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S  # --rest_body_timeout_seconds, per MiB
