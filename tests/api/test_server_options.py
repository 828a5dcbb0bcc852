"""One flag table makes both the parser and the frozen ServerOptions the server is given."""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import inspect

import pytest

from pyserving.api import server_options as server_options_module
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


def test_the_written_out_fields_are_the_table_rows() -> None:
    """ServerOptions is written by hand beside the table: each field must be a row's name,
    in the table's order, with the row's type and default (a drift names its field)."""
    fields = dataclasses.fields(ServerOptions)
    assert [f.name for f in fields] == [flag.name for flag in FLAGS]
    for field, flag in zip(fields, FLAGS, strict=True):
        assert field.type == flag.type.__name__, field.name  # annotations are strings here
        assert field.default == flag.default, field.name
        assert type(field.default) is flag.type, field.name


def test_every_option_has_a_docstring() -> None:
    """One line under each field says what it is (what editors show on hover)."""
    body = ast.parse(inspect.getsource(server_options_module)).body
    (options_class,) = [n for n in body if isinstance(n, ast.ClassDef)]
    statements = options_class.body
    documented = [
        node.target.id
        for node, after in zip(statements, [*statements[1:], None], strict=True)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    ]
    assert documented == [f.name for f in dataclasses.fields(ServerOptions)]


def test_options_are_typed_and_frozen() -> None:
    options = server_options(parse("--port=9000", "--enable_batching", "--rest_api_port", "8501"))
    assert (options.port, options.enable_batching, options.rest_api_port) == (9000, True, 8501)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.port = 1  # type: ignore[misc]  # the point: a frozen field refuses it
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
