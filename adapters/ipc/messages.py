"""What crosses between a front-end and the engine: msgpack headers and raw tensor buffers.

A ZeroMQ multipart message carries a batch: one msgpack frame listing `Request`s (or
`Reply`s), then each one's tensor frames in turn (`frames` says how many are its own): one
per numeric tensor (its C-order bytes, sent and received without copies where ZeroMQ
allows) or two per string tensor (the lengths as little-endian uint64, then the bytes joined).
A large request tensor may instead live in a shared-memory segment the header names
(`TensorHeader.segment`). No pickling: the receiver rebuilds arrays with `np.frombuffer`.

Why batches: each side sends what one turn of its event loop produced as one message, so
that under load a message, its socket calls and the peer's wake-up serve many requests
(`Outbox`); at low load a batch is one request and costs what a single message did.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

# Numeric kinds whose bytes are the whole value: bool, ints, floats, complex, fixed-width
# bytes and unicode, datetimes. Object ('O') and void ('V') arrays never cross as bytes.
RAW_KINDS = frozenset("biufcSUmM")
STRING = "bytes"  # TensorHeader.dtype of an object array of bytes (TensorFlow's DT_STRING)
_LENGTHS = np.dtype("<u8")


class TransportError(ValueError):
    """A malformed message: a header or buffer that does not describe a tensor."""


class TensorHeader(msgspec.Struct, array_like=True, frozen=True):
    name: str
    dtype: str  # numpy's dtype.str ("<f4"), or STRING
    shape: tuple[int, ...]
    segment: str = ""  # the shared-memory segment holding the bytes; "" for frames
    nbytes: int = 0  # the bytes used in `segment`


class Request(msgspec.Struct, array_like=True, frozen=True):
    id: int  # the front-end's own numbering; the reply carries it back
    method: str
    timeout_s: float | None  # what was left of the caller's deadline when it was sent
    params: dict[str, Any]
    tensors: list[TensorHeader]
    frames: int = 0  # how many of the message's frames are this request's


class Reply(msgspec.Struct, array_like=True, frozen=True):
    id: int
    code: str  # "OK", or an engine.errors.Code name
    message: str
    params: dict[str, Any]
    tensors: list[TensorHeader]
    frames: int = 0  # how many of the message's frames are this reply's


OK = "OK"
REQUESTS_DECODER = msgspec.msgpack.Decoder(list[Request])
REPLIES_DECODER = msgspec.msgpack.Decoder(list[Reply])
ENCODER = msgspec.msgpack.Encoder()


def split_frames(
    items: Sequence[Request] | Sequence[Reply], frames: Sequence[Any]
) -> list[Sequence[Any]]:
    """Each batched item's own frames, in order; a count that does not add up is refused."""
    if sum(item.frames for item in items) != len(frames) or any(i.frames < 0 for i in items):
        raise TransportError(
            f"{len(frames)} frames for a batch that claims {sum(i.frames for i in items)}"
        )
    out: list[Sequence[Any]] = []
    position = 0
    for item in items:
        out.append(frames[position : position + item.frames])
        position += item.frames
    return out


class Outbox:
    """What one turn of the event loop sends to one peer: items and their frames, sent as
    one message by `take` (the sender schedules that once, when the first item arrives)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.frames: list[Any] = []

    def add(self, item: Any, frames: Sequence[Any]) -> bool:
        """Queue one item; True when it is the first (the caller schedules the send)."""
        self.items.append(item)
        self.frames += frames
        return len(self.items) == 1

    def take(self) -> tuple[list[Any], list[Any]]:
        """The message's frames (the batch's header first) and the items it carries."""
        items, frames = self.items, self.frames
        self.items, self.frames = [], []
        return [ENCODER.encode(items), *frames], items


def tensor_frames(name: str, value: np.ndarray) -> tuple[TensorHeader, list[Any]]:
    """The header and the frames of one tensor. Numeric arrays cross as their own buffer
    (a copy only where the array is not C-contiguous); object arrays must hold bytes."""
    array = np.asarray(value)
    if array.dtype.kind in RAW_KINDS:
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            array = array.copy(order="C")
        header = TensorHeader(name, array.dtype.str, array.shape)
        return header, [array.reshape(-1).view(np.uint8)]
    if array.dtype.kind == "O":
        items = array.reshape(-1).tolist()
        if not all(type(item) is bytes for item in items):
            raise TypeError(f"tensor {name!r}: object arrays cross only as bytes elements")
        lengths = np.fromiter((len(item) for item in items), _LENGTHS, len(items))
        return TensorHeader(name, STRING, array.shape), [lengths, b"".join(items)]
    raise TypeError(f"tensor {name!r}: dtype {array.dtype} cannot cross as raw bytes")


def _count(shape: Sequence[int]) -> int:
    """Elements in `shape`: exact (Python's integers; numpy's int64 product would wrap)."""
    if any(d < 0 for d in shape):
        raise TransportError(f"negative dimension in shape {list(shape)}")
    return math.prod(shape)


@functools.lru_cache(maxsize=64)
def _dtype(text: str) -> np.dtype | str:
    """numpy's dtype for a header's dtype string, made once per string (it is on every
    tensor's way), or why it cannot be one whose bytes are the value."""
    try:
        dtype = np.dtype(text)
    except TypeError:
        return f"unknown dtype {text!r}"
    return dtype if dtype.kind in RAW_KINDS else f"dtype {text!r} is not raw"


def raw_dtype(header: TensorHeader) -> np.dtype:
    dtype = _dtype(header.dtype)
    if isinstance(dtype, str):
        raise TransportError(f"tensor {header.name!r}: {dtype}")
    return dtype


def array_from(header: TensorHeader, buffer: memoryview | bytes) -> np.ndarray:
    """A read-only array over `buffer` (no copy), checked against its header."""
    dtype = raw_dtype(header)
    count = _count(header.shape)
    if len(buffer) != count * dtype.itemsize:
        raise TransportError(
            f"tensor {header.name!r}: {len(buffer)} bytes for shape {list(header.shape)} "
            f"of {header.dtype}"
        )
    array = np.frombuffer(buffer, dtype, count).reshape(header.shape)
    array.flags.writeable = False
    return array


def strings_from(header: TensorHeader, lengths: memoryview | bytes, data: memoryview) -> np.ndarray:
    count = _count(header.shape)
    if len(lengths) != count * _LENGTHS.itemsize:
        raise TransportError(f"tensor {header.name!r}: {len(lengths)} length bytes for {count}")
    ends = np.cumsum(np.frombuffer(lengths, _LENGTHS), dtype=np.uint64)
    if (ends[-1] if count else 0) != len(data):
        raise TransportError(f"tensor {header.name!r}: lengths do not add up to its bytes")
    raw = bytes(data)
    out = np.empty(count, dtype=object)
    start = 0
    for index, end in enumerate(ends.tolist()):
        out[index] = raw[start:end]
        start = end
    return out.reshape(header.shape)


def decode_tensors(
    headers: Sequence[TensorHeader], frames: Sequence[Any], segment: Any = None
) -> dict[str, np.ndarray]:
    """The tensors of a message from its frames (zmq.Frame or bytes) and, for headers that
    name a segment, from `segment(name)`, a buffer (the engine's attached segments)."""
    out: dict[str, np.ndarray] = {}
    position = 0

    def next_frame() -> memoryview:
        nonlocal position
        if position >= len(frames):
            raise TransportError("fewer frames than the header's tensors")
        frame = frames[position]
        position += 1
        return memoryview(frame.buffer if hasattr(frame, "buffer") else frame)

    for header in headers:
        if header.segment:
            if segment is None:
                raise TransportError(f"tensor {header.name!r}: shared memory is not accepted here")
            out[header.name] = array_from(header, segment(header.segment)[: header.nbytes])
        elif header.dtype == STRING:
            lengths = next_frame()
            out[header.name] = strings_from(header, lengths, next_frame())
        else:
            out[header.name] = array_from(header, next_frame())
    if position != len(frames):
        raise TransportError(f"{len(frames) - position} frames beyond the header's tensors")
    return out


def frames_of(tensors: Mapping[str, np.ndarray]) -> tuple[list[TensorHeader], list[Any]]:
    headers, frames = [], []
    for name, value in tensors.items():
        header, parts = tensor_frames(name, value)
        headers.append(header)
        frames += parts
    return headers, frames
