"""Who may change what serves: --restricted_api=GROUPS:KEY=VALUE, as Triton's
--grpc-restricted-protocol / --http-restricted-api.

The groups' calls are answered only when the gRPC metadata or the HTTP header KEY
equals VALUE (on gRPC, Triton's spelling `triton-grpc-protocol-KEY` is accepted too, so
clients written for Triton work unchanged). A call without it gets PERMISSION_DENIED
(HTTP 403), runs nothing, and is logged once with the api and the peer. Groups:

- model-repository: RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload (gRPC)
  and POST /v2/repository/... (REST);
- model-config: TF Serving's ModelService.HandleReloadConfigRequest (gRPC; TF Serving
  has no REST equivalent).

Inference, metadata, status and health stay open. Triton answers a refused gRPC call
UNAVAILABLE; here it is PERMISSION_DENIED, which says what happened and is not retried
by clients as a transient failure.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from pyserving.engine.errors import Code, ConfigurationError, ServingError

log = structlog.get_logger("pyserving.api")

MODEL_REPOSITORY = "model-repository"
MODEL_CONFIG = "model-config"
GROUPS = (MODEL_REPOSITORY, MODEL_CONFIG)
TRITON_GRPC_PREFIX = "triton-grpc-protocol-"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
USAGE = (
    "write --restricted_api=GROUP[,GROUP]:KEY=VALUE with groups from "
    f"{', '.join(GROUPS)}, e.g. --restricted_api=model-repository,model-config:admin-key=s3cret"
)


class RestrictionError(ConfigurationError):
    """A --restricted_api value that cannot be used; the message says what to write."""


@dataclass(frozen=True)
class Restriction:
    groups: frozenset[str]
    key: str  # lower case: gRPC metadata keys are, and HTTP header names are matched so
    value: str


def parse_restricted_api(text: str) -> Restriction | None:
    """The restriction --restricted_api names; None when the flag is empty."""
    if not text:
        return None
    groups_text, colon, secret = text.partition(":")
    key, equals, value = secret.partition("=")
    if not colon or not equals:
        raise RestrictionError(f"--restricted_api={text!r} is not GROUPS:KEY=VALUE; {USAGE}")
    groups = [g.strip() for g in groups_text.split(",")]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise RestrictionError(
            f"--restricted_api: unknown group {', '.join(map(repr, unknown))}; {USAGE}"
        )
    if not _KEY.fullmatch(key):
        raise RestrictionError(
            f"--restricted_api: header name {key!r} must be letters, digits, '-', '_' or "
            f"'.'; {USAGE}"
        )
    if not value or not value.isprintable() or value != value.strip():
        raise RestrictionError(
            f"--restricted_api: the value for {key!r} must be non-empty printable text "
            f"without leading or trailing spaces; {USAGE}"
        )
    return Restriction(frozenset(groups), key.lower(), value)


def _matches(presented: Iterable[str], expected: str) -> bool:
    # aiohttp keeps a header's bytes that are not UTF-8 as surrogates: encode them back
    # the same way, so such a value is compared (and refused), never an encoding error.
    return any(
        hmac.compare_digest(v.encode("utf-8", "surrogateescape"), expected.encode())
        for v in presented
    )


class Restrictions:
    """The checks for one server; with no restriction every call passes."""

    def __init__(self, restriction: Restriction | None) -> None:
        self.restriction = restriction

    def restricts(self, group: str) -> bool:
        return self.restriction is not None and group in self.restriction.groups

    def check_grpc(self, group: str, api: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if not self.restricts(group):
            return
        assert self.restriction is not None
        wanted = (self.restriction.key, TRITON_GRPC_PREFIX + self.restriction.key)
        presented = [
            value
            for key, value in context.invocation_metadata() or ()
            if key in wanted and isinstance(value, str)
        ]
        if not _matches(presented, self.restriction.value):
            raise self._denied(
                group,
                api,
                context.peer(),
                f"This protocol is restricted, expecting header '{self.restriction.key}'",
            )

    def check_http(self, group: str, api: str, headers: Any, peer: str | None) -> None:
        """`headers`: aiohttp's (case-insensitive, a name may repeat)."""
        if not self.restricts(group):
            return
        assert self.restriction is not None
        presented = headers.getall(self.restriction.key, [])
        if not _matches(presented, self.restriction.value):
            raise self._denied(
                group,
                api,
                peer,
                f"This API is restricted, expecting header '{self.restriction.key}'",
            )

    @staticmethod
    def _denied(group: str, api: str, peer: str | None, message: str) -> ServingError:
        log.warning("restricted_api_denied", api=api, group=group, peer=peer or "unknown")
        return ServingError(Code.PERMISSION_DENIED, message)

    def guard(self, servicer: object, group: str, methods: Collection[str]) -> object:
        """`servicer` with `methods` checked first; the servicer itself when `group` is open."""
        if not self.restricts(group):
            return servicer
        return _Guarded(servicer, self, group, frozenset(methods))


class _Guarded:
    """A servicer's methods behind a restriction check (add_service looks them up by name)."""

    def __init__(
        self, servicer: object, restrictions: Restrictions, group: str, methods: frozenset[str]
    ) -> None:
        self._servicer = servicer
        self._restrictions = restrictions
        self._group = group
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)
        if name not in self._methods:
            return method
        restrictions, group = self._restrictions, self._group

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            restrictions.check_grpc(group, name, context)
            return await method(request, context)

        return checked
