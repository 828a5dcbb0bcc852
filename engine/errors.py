"""Errors the serving path returns to clients, with TF Serving's canonical codes.

The engine does not import gRPC: `Code` names match `grpc.StatusCode` member names, and
the API layer maps them by name (and to HTTP statuses for REST).
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


class Code(Enum):
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"

    @classmethod
    def from_number(cls, number: int) -> Code:
        """The code of a canonical number (TensorFlow's error codes are gRPC's: 1..16)."""
        return _BY_NUMBER.get(number, cls.UNKNOWN)


_BY_NUMBER = {number: code for number, code in enumerate(Code, start=1)}


# Client strings quoted in errors are cut to this many characters (see `quoted`).
QUOTE_LIMIT = 256
# A whole message is cut to this many: gRPC carries it in a trailer, and a reply whose
# metadata passes the client's limit (8 KiB by default) arrives as RESOURCE_EXHAUSTED,
# not as the status the server meant.
MESSAGE_LIMIT = 2048


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """A client-supplied string as an error may quote it: cut to `limit` characters and
    marked as cut, so a hostile name cannot make the reply too big to deliver."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters cut]"


class ConfigurationError(ValueError):
    """A setting (a flag, a config file, an OTEL_* variable) that cannot be used as given;
    the message names it and says what to change. The one base of every config error:
    `pyserving serve` catches it alone and exits with `exit_code`, printing the message
    (argparse's code for a usage error), and a request that carries a config (a
    HandleReloadConfigRequest) answers `code`."""

    code: ClassVar[Code] = Code.INVALID_ARGUMENT
    exit_code: ClassVar[int] = 2


class ServingError(Exception):
    """An error meant for the client: its message is safe and says what to fix."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(Code.FAILED_PRECONDITION, message)
