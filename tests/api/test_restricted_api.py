"""--restricted_api and the repository flags: what parses, what is refused at start-up
with a message saying what to write, and the header checks themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from multidict import CIMultiDict
from structlog.testing import capture_logs

from pyserving.api.cli import build_parser
from pyserving.api.envelope.restricted_api import (
    MODEL_CONFIG,
    MODEL_REPOSITORY,
    Restriction,
    RestrictionError,
    Restrictions,
    parse_restricted_api,
)
from pyserving.api.flags import server_options
from pyserving.api.server import (
    models_from_flags,
    repository_from_flags,
    restrictions_from_flags,
)
from pyserving.engine.errors import Code, ConfigurationError, ServingError


def options(*flags: str):
    return server_options(build_parser().parse_args(["serve", *flags]))


def test_a_restriction_parses_into_groups_key_and_value() -> None:
    parsed = parse_restricted_api("model-repository,model-config:Admin-Key=a=b c")
    assert parsed == Restriction(frozenset({MODEL_REPOSITORY, MODEL_CONFIG}), "admin-key", "a=b c")
    assert parse_restricted_api("model-config:k=v") == Restriction(
        frozenset({MODEL_CONFIG}), "k", "v"
    )
    assert parse_restricted_api("") is None
    flags = options("--restricted_api=model-repository:admin=s3cret")
    assert restrictions_from_flags(flags).restricts(MODEL_REPOSITORY)
    assert not restrictions_from_flags(options()).restricts(MODEL_CONFIG)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("model-repository", "is not GROUPS:KEY=VALUE"),
        ("model-repository:admin", "is not GROUPS:KEY=VALUE"),
        ("inference:admin=x", "unknown group 'inference'"),
        ("model-repository,:admin=x", "unknown group ''"),
        (":admin=x", "unknown group ''"),
        ("model-config:bad key=x", "header name 'bad key'"),
        ("model-config:=x", "header name ''"),
        ("model-config:admin=", "must be non-empty"),
        ("model-config:admin= padded", "must be non-empty"),
    ],
)
def test_bad_values_are_refused_saying_what_to_write(value: str, says: str) -> None:
    with pytest.raises(RestrictionError) as refused:
        parse_restricted_api(value)
    assert says in str(refused.value)
    assert "write --restricted_api=GROUP[,GROUP]:KEY=VALUE" in str(refused.value)
    with pytest.raises(ConfigurationError) as startup:
        restrictions_from_flags(options(f"--restricted_api={value}"))
    assert says in str(startup.value)


def test_repository_flags_at_start_up(tmp_path: Path) -> None:
    alone = options(f"--model_repository={tmp_path}")
    assert models_from_flags(alone).models == ()  # no model yet is not an error with it
    with pytest.raises(ConfigurationError, match=r"no model to serve.*--model_repository=DIR"):
        models_from_flags(options())
    with pytest.raises(ConfigurationError, match="--model_repository_load_all needs"):
        # ignored below: the flags fail before the rest is used
        repository_from_flags(options("--model_repository_load_all"), None, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="is not a folder"):
        # ignored below: the flags fail before the rest is used
        repository_from_flags(options(f"--model_repository={tmp_path / 'no'}"), None, None)  # type: ignore[arg-type]
    # ignored below: no repository: the rest is never used
    assert repository_from_flags(options(), None, None) is None  # type: ignore[arg-type]


class Context:
    """What check_grpc reads of a grpc.aio.ServicerContext."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"


def test_checks_pass_the_right_header_and_refuse_and_log_the_rest() -> None:
    restrictions = Restrictions(parse_restricted_api("model-repository:admin-key=s3cret"))
    restrictions.check_grpc(
        MODEL_REPOSITORY, "RepositoryModelLoad", Context(("admin-key", "s3cret"))
    )
    restrictions.check_grpc(
        MODEL_REPOSITORY, "x", Context(("triton-grpc-protocol-admin-key", "s3cret"))
    )
    restrictions.check_grpc(MODEL_CONFIG, "HandleReloadConfigRequest", Context())  # open
    restrictions.check_http(MODEL_REPOSITORY, "y", CIMultiDict({"Admin-Key": "s3cret"}), "peer")
    with capture_logs() as logs:
        for context in (Context(), Context(("admin-key", "S3CRET")), Context(("other", "s3cret"))):
            with pytest.raises(ServingError) as denied:
                restrictions.check_grpc(MODEL_REPOSITORY, "RepositoryModelLoad", context)
            assert denied.value.code == Code.PERMISSION_DENIED
            assert denied.value.message == (
                "This protocol is restricted, expecting header 'admin-key'"
            )
        with pytest.raises(ServingError) as denied:
            restrictions.check_http(
                MODEL_REPOSITORY, "rest_repository_load", CIMultiDict(), "127.0.0.1"
            )
        assert denied.value.message == "This API is restricted, expecting header 'admin-key'"
    assert [(line["api"], line["peer"], line["log_level"]) for line in logs] == [
        ("RepositoryModelLoad", "ipv4:127.0.0.1:5555", "warning")
    ] * 3 + [("rest_repository_load", "127.0.0.1", "warning")]
