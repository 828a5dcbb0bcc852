"""TFRecord framing, written and read without TensorFlow.

A record is: length (uint64, little-endian), masked CRC-32C of those 8 bytes, the data,
masked CRC-32C of the data (tensorflow/core/lib/io/record_writer.cc). The checksum comes
from the `crc32c` package (hardware CRC-32C where the CPU has it). TensorFlow's own
writer is not used for the request log: it opens its file itself, so it could not create
it 0600 with `O_EXCL` in one step, and its errors come back only at flush or close, not
per record, which the writer needs to truncate a torn record and count the drop.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import crc32c

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
HEADER_BYTES = _LENGTH.size + _CRC.size


class TFRecordError(ValueError):
    """The bytes are not a well-formed TFRecord stream; the message says where."""


def masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record, ready to append to a TFRecord file."""
    length = _LENGTH.pack(len(data))
    return b"".join((length, _CRC.pack(masked_crc(length)), data, _CRC.pack(masked_crc(data))))


def read_records(stream: BinaryIO, name: str = "file") -> Iterator[bytes]:
    """The records of a TFRecord stream, checksums verified; TFRecordError at a bad one."""
    index = 0
    while True:
        header = stream.read(HEADER_BYTES)
        if not header:
            return
        index += 1
        if len(header) < HEADER_BYTES:
            raise TFRecordError(f"{name}: record {index} is truncated in its header")
        length_bytes = header[: _LENGTH.size]
        (length,) = _LENGTH.unpack(length_bytes)
        (length_crc,) = _CRC.unpack(header[_LENGTH.size :])
        if masked_crc(length_bytes) != length_crc:
            raise TFRecordError(f"{name}: record {index} has a corrupted length")
        data = stream.read(length)
        footer = stream.read(_CRC.size)
        if len(data) < length or len(footer) < _CRC.size:
            raise TFRecordError(f"{name}: record {index} is truncated")
        if masked_crc(data) != _CRC.unpack(footer)[0]:
            raise TFRecordError(f"{name}: record {index} has a corrupted payload")
        yield data
