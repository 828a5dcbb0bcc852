"""One flag table makes both the parser and the frozen ServerOptions the server is given."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

import pytest

from pyserving.api.cli import build_parser
from pyserving.api.flag_compat import TF_SERVING_FLAGS
from pyserving.api.flags import FLAGS, ServerOptions, server_options
from pyserving.api.serving_loop import run_on_loop


def parse(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *flags])


def test_options_have_the_flags_names_and_defaults() -> None:
    namespace = parse()
    options = server_options(namespace)
    fields = {f.name for f in dataclasses.fields(ServerOptions)}
    assert fields == {f.name for f in FLAGS} == set(vars(namespace)) - {"command", "func"}
    assert dataclasses.asdict(options) == {name: getattr(namespace, name) for name in fields}
    assert options == ServerOptions()  # the dataclass defaults are the parser's


def test_options_are_typed_and_frozen() -> None:
    options = server_options(parse("--port=9000", "--enable_batching", "--rest_api_port", "8501"))
    assert (options.port, options.enable_batching, options.rest_api_port) == (9000, True, 8501)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.port = 1  # type: ignore[misc]
    types = {f.name: f.type for f in FLAGS}
    for name, value in dataclasses.asdict(options).items():
        assert isinstance(value, types[name]), name


def test_the_tf_serving_column_comes_from_the_same_rows() -> None:
    own = {f.name for f in FLAGS if f.tf_serving is None}
    assert "batching_idle_micros" in own and "event_log" in own
    assert set(TF_SERVING_FLAGS) == {f.name for f in FLAGS} - own


@pytest.mark.parametrize(
    ("flags", "loop_module"), [((), "uvloop"), (("--event_loop=asyncio",), "asyncio")]
)
def test_the_server_runs_on_the_loop_event_loop_names(
    flags: tuple[str, ...], loop_module: str
) -> None:
    """uvloop by default (Linux), the standard library's loop when asked for."""
    options = server_options(parse(*flags))

    async def running_loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_on_loop(running_loop_module(), options.event_loop).split(".")[0] == loop_module
