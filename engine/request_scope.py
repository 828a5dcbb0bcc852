"""The request a line of log belongs to, without paying for it on every request.

Each request sets one context variable to a small `RequestScope` (one `ContextVar.set`,
undone at the end); its fields reach a log line only when one is written, through the
`merge_request_scope` processor. The request id is the client's `x-request-id` when it
sent one; otherwise it is made from a per-process prefix and a counter, and only formatted
when a line needs it (no uuid per request).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

_CLEAN_REQUEST_ID = re.compile(r"[^A-Za-z0-9._:-]")
_PREFIX = os.urandom(4).hex()
_SERIAL = itertools.count(1)


def clean_request_id(value: str) -> str:
    """A client-sent id made safe for logs: allowed characters only, at most 64."""
    return _CLEAN_REQUEST_ID.sub("", value)[:64]


class RequestScope:
    """One request's api, model and (lazily) id; mutable while the request is parsed."""

    __slots__ = ("_client_id", "_id", "api", "model", "serial")

    def __init__(self, api: str, model: str, client_id: Callable[[], str | None]) -> None:
        self.api = api
        self.model = model
        self.serial = next(_SERIAL)  # a C-level counter step: cheap
        self._client_id = client_id
        self._id: str | None = None

    @property
    def request_id(self) -> str:
        if self._id is None:
            sent = self._client_id()
            cleaned = clean_request_id(sent) if sent else ""
            self._id = cleaned or f"{_PREFIX}{self.serial & 0xFFFFFFFF:08x}"
        return self._id


CURRENT: ContextVar[RequestScope | None] = ContextVar("pyserving_request", default=None)


def merge_request_scope(
    logger: object, name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current request's id, api and model, when there is one."""
    scope = CURRENT.get()
    if scope is not None:
        event_dict.setdefault("request_id", scope.request_id)
        event_dict.setdefault("api", scope.api)
        event_dict.setdefault("model", scope.model)
    return event_dict
