"""JSON request bodies and replies as both HTTP protocols read and write them (TF Serving's
REST API and the Open Inference Protocol's): one parser, one writer, one set of errors.

TF Serving accepts `NaN`, `Infinity` and `-Infinity` as numbers (rapidjson's kParseNanAndInf),
and so does pyserving on both protocols. orjson parses the body; a body it refuses is read
again by the standard library's parser, the only one that takes those tokens
(`TokenDocument`). A number literal too big for a double (`1e400`) is not Infinity: orjson
reads it as Infinity, but only where the body has no NaN/Infinity token, so in a body orjson
read, a non-finite number can only be such a literal, and it is refused naming the input
(`refuse_out_of_range`), as rapidjson refuses it. Replies are written by orjson straight from
numpy arrays; only a float array holding NaN or ±Infinity takes the standard library's path,
because orjson would write those as null.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from pyserving.engine.errors import ServingError, invalid_argument, quoted

_NUMPY_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class TokenDocument(dict[str, Any]):
    """A body read by the standard library's parser, the only one that takes NaN and
    ±Infinity tokens: in any other body a non-finite number was a literal out of range."""


class OutOfRange:
    """A JSON number literal that no double holds (`1e400`): kept as its text, so the
    input it was sent for is refused by name instead of receiving Infinity."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _checked_float(text: str) -> float | OutOfRange:
    value = float(text)
    return OutOfRange(text) if math.isinf(value) else value


def parse_body(body: bytes) -> dict[str, Any]:
    """The request object; INVALID_ARGUMENT for an empty body, bad JSON or a non-object."""
    if not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _parse_exact(body)  # NaN/Infinity are not JSON, but TF Serving takes them
        if isinstance(doc, dict):
            doc = TokenDocument(doc)
    if not isinstance(doc, dict):
        raise invalid_argument(
            f"JSON Value: {short(doc)} Is not object: the body must be a JSON object such "
            'as {"instances": [...]} or {"inputs": ...}'
        )
    return doc


def _parse_exact(body: bytes) -> Any:
    """The standard library's parser: it reads NaN, Infinity and -Infinity, keeps integers
    exact, and here marks a literal too big for a double (`OutOfRange`)."""
    try:
        return json.loads(body, parse_float=_checked_float)
    except json.JSONDecodeError as exc:
        raise invalid_argument(f"JSON Parse error: {exc.msg} at offset: {exc.pos}") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise invalid_argument(f"JSON Parse error: {type(exc).__name__}") from None


def short(value: Any, limit: int = 200) -> str:
    """A JSON rendering of `value` for an error message, cut to `limit` characters."""
    try:
        text = json.dumps(value, allow_nan=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refuse_out_of_range(
    value: Any, array: np.ndarray, dtype: np.dtype, type_name: str, name: str, finite: bool
) -> None:
    """What numpy's reading of JSON `value` (as `array`) hides from the type checks: a
    number no double holds, or an integer past `dtype` or 64 bits (numpy made them objects,
    or floats beside other integers); and, when the body had no NaN/Infinity token
    (`finite`), a non-finite float, which orjson made of a literal out of range. Shared by
    TF Serving's REST and the Open Inference Protocol's JSON."""
    kind = array.dtype.kind
    if kind == "O" or (kind == "f" and dtype.kind in "iu"):  # off the usual path: look closer
        found = first_out_of_range(value, dtype)
        if found is not None:
            raise out_of_range_error(found, type_name, name)
    if finite and kind == "f" and dtype.kind in "fc" and not np.isfinite(array).all():
        raise out_of_range_error(OutOfRange("a number literal"), type_name, name)


def first_out_of_range(value: Any, dtype: np.dtype) -> int | OutOfRange | None:
    """The first number in `value` that no double holds, or an integer outside an integer
    `dtype` (or outside 64 bits), if any. Looked for only once numpy found the values
    mixed (objects, or integers it had to make floats), so off the usual path."""
    low, high = -(1 << 63), (1 << 64) - 1
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = int(info.min), int(info.max)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, OutOfRange) or (
            isinstance(item, int) and not isinstance(item, bool) and not low <= item <= high
        ):
            return item
    return None


def out_of_range_error(value: int | OutOfRange, type_name: str, name: str) -> ServingError:
    if isinstance(value, OutOfRange):
        return invalid_argument(
            f"input '{name}' ({type_name}): JSON Value: {value} is too big to be stored in a double"
        )
    return invalid_argument(
        f"input '{name}': JSON Value: {quoted(str(value), 40)} is out of range for {type_name}"
    )


def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def dumps(document: Any) -> bytes:
    if _has_non_finite(document):
        return json.dumps(document, default=_to_list, allow_nan=True).encode()
    return orjson.dumps(document, option=_NUMPY_OPTIONS)


def _to_list(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _has_non_finite(document: Any) -> bool:
    """NaN/±Infinity anywhere in float arrays (orjson would write them as null)."""
    if isinstance(document, np.ndarray):
        return document.dtype.kind == "f" and not bool(np.isfinite(document).all())
    if isinstance(document, dict):
        return any(_has_non_finite(v) for v in document.values())
    if isinstance(document, list):
        return any(_has_non_finite(v) for v in document if isinstance(v, dict | np.ndarray))
    return False


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
