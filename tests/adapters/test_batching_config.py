"""`--batching_parameters_file`: TF Serving's text proto, its defaults, and start-up errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from google.protobuf import text_format

from pyserving.adapters.batching_config import (
    BatchingConfigError,
    BatchingParameters,
    load_batching_options,
    parse_batching_parameters,
)
from pyserving.api.cli import build_parser
from pyserving.api.server import runner_from_flags
from pyserving.engine.batching import BatchingRunner
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import ConfigurationError
from pyserving.engine.runner import DirectRunner

# As TF Serving's batching guide (tensorflow_serving/batching/README.md) shows it.
TF_SERVING_DOCS_EXAMPLE = """
max_batch_size { value: 128 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000000 }
num_batch_threads { value: 8 }
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "batching.config"
    path.write_text(text)
    return str(path)


def test_tf_serving_docs_example_parses_unchanged(tmp_path: Path) -> None:
    options = load_batching_options(write(tmp_path, TF_SERVING_DOCS_EXAMPLE))
    assert options.max_batch_size == 128
    assert options.batch_timeout_micros == 0
    assert options.max_enqueued_batches == 1_000_000
    assert options.num_batch_threads == 8
    assert options.allowed_batch_sizes == ()
    assert options.pad_variable_length_inputs is False


def test_every_field_is_read(tmp_path: Path) -> None:
    text = """
        max_batch_size { value: 64 }
        batch_timeout_micros { value: 2500 }
        max_enqueued_batches { value: 3 }
        num_batch_threads { value: 2 }
        thread_pool_name { value: "mnist_batch" }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 16
        allowed_batch_sizes: 32
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 32 }
    """
    assert load_batching_options(write(tmp_path, text)) == BatchingOptions(
        max_batch_size=64,
        batch_timeout_micros=2500,
        max_enqueued_batches=3,
        num_batch_threads=2,
        thread_pool_name="mnist_batch",
        allowed_batch_sizes=(8, 16, 32),
        pad_variable_length_inputs=True,
        enable_large_batch_splitting=True,
        max_execution_batch_size=32,
    )


def test_unset_fields_keep_tf_serving_defaults(tmp_path: Path) -> None:
    options = load_batching_options(write(tmp_path, "max_batch_size { value: 16 }"))
    assert (options.batch_timeout_micros, options.max_enqueued_batches) == (0, 10)
    assert options.num_batch_threads >= 1
    defaults = load_batching_options(None)
    assert (defaults.max_batch_size, defaults.max_enqueued_batches) == (1000, 10)


def test_wire_format_matches_tf_serving_field_numbers() -> None:
    # Hand-encoded: field 1 (max_batch_size, a message) holding Int64Value{value: 128};
    # field 6 (allowed_batch_sizes, packed int64) [128]; field 8 BoolValue{true};
    # field 9 Int64Value{64}.
    wire = b"\x0a\x03\x08\x80\x01" + b"\x32\x02\x80\x01" + b"\x42\x02\x08\x01" + b"\x4a\x02\x08\x40"
    message = BatchingParameters.FromString(wire)
    assert message.max_batch_size.value == 128
    assert list(message.allowed_batch_sizes) == [128]
    assert message.enable_large_batch_splitting.value is True
    assert message.max_execution_batch_size.value == 64
    assert BatchingParameters.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"


def test_misspelt_field_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "max_batch_sise { value: 8 }")
    with pytest.raises(BatchingConfigError, match=r"batching.config.*max_batch_sise"):
        load_batching_options(path)
    with pytest.raises(text_format.ParseError):
        # a wrapper, not a bare number, as in TF Serving
        parse_batching_parameters("max_batch_size: 8")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 16",
            "must equal max_batch_size (32)",
        ),
        (
            "max_batch_size { value: 32 } allowed_batch_sizes: 16 allowed_batch_sizes: 8 "
            "allowed_batch_sizes: 32",
            "strictly increasing",
        ),
        (
            "max_batch_size { value: 32 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 16",
            "must equal max_execution_batch_size (8)",
        ),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be at least 1"),
        ("max_batch_size { value: 0 }", "max_batch_size must be at least 1"),
    ],
)
def test_invalid_parameters_are_start_up_errors(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(BatchingConfigError) as error:
        load_batching_options(write(tmp_path, text))
    assert says in str(error.value)


def test_missing_file_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(BatchingConfigError, match="cannot read"):
        load_batching_options(str(tmp_path / "absent.config"))


def serve_options(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "--model_base_path=/m", *flags])


def test_parameters_file_without_enable_batching_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, TF_SERVING_DOCS_EXAMPLE)
    with pytest.raises(ConfigurationError, match="add --enable_batching"):
        runner_from_flags(serve_options(f"--batching_parameters_file={path}"), print)


def test_flags_pick_the_runner(tmp_path: Path) -> None:
    direct = runner_from_flags(serve_options(), print)
    assert isinstance(direct, DirectRunner)
    direct.close()
    path = write(tmp_path, "max_batch_size { value: 8 } num_batch_threads { value: 1 }")
    batching = runner_from_flags(
        serve_options("--enable_batching", f"--batching_parameters_file={path}"), print
    )
    assert isinstance(batching, BatchingRunner)
    assert batching.options.max_batch_size == 8
    batching.close()
    with pytest.raises(ConfigurationError, match="add --enable_batching"):
        runner_from_flags(serve_options("--batching_idle_micros=500"), print)
    idle = runner_from_flags(
        serve_options("--enable_batching", "--batching_idle_micros=500"), print
    )
    assert isinstance(idle, BatchingRunner)
    assert idle.options.idle_micros == 500
    idle.close()
    bad = write(tmp_path, "max_batch_size { value: 8 } allowed_batch_sizes: 4")
    with pytest.raises(ConfigurationError, match="allowed_batch_sizes"):
        runner_from_flags(
            serve_options("--enable_batching=true", f"--batching_parameters_file={bad}"), print
        )
