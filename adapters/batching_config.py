"""`--batching_parameters_file`: TF Serving's `BatchingParameters` text proto, read as it is.

The `tensorflow-serving-api` wheel ships no `tensorflow_serving.servables` protos, so
protos/batching_parameters.proto is a trimmed copy of TF Serving's message
(tensorflow/serving, tensorflow_serving/servables/tensorflow/session_bundle_config.proto)
with its exact package, name, field numbers and types. The same wire and text format
means a file written for `tensorflow_model_server` parses here unchanged, and one with a
misspelt field is refused the same way.
"""

from __future__ import annotations

import os
from typing import Any

from google.protobuf import text_format

from pyserving.adapters.protos.batching_parameters_pb2 import BatchingParameters
from pyserving.adapters.text_proto import parse_text_proto
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import ConfigurationError

__all__ = [
    "BatchingConfigError",
    "BatchingParameters",
    "load_batching_options",
    "parse_batching_parameters",
]


class BatchingConfigError(ConfigurationError):
    """The batching file cannot be used; the message names the file and what to change."""


def parse_batching_parameters(text: str) -> BatchingParameters:
    """A `BatchingParameters` message from its text form (raises text_format.ParseError)."""
    return parse_text_proto(BatchingParameters, text)


def options_from_proto(params: BatchingParameters) -> BatchingOptions:
    """Unset fields keep TF Serving's defaults; the result is validated."""
    defaults = BatchingOptions()
    values: dict[str, Any] = {}
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "thread_pool_name",
        "enable_large_batch_splitting",
        "max_execution_batch_size",
    ):
        if params.HasField(name):
            values[name] = getattr(params, name).value
    values["allowed_batch_sizes"] = tuple(params.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = params.pad_variable_length_inputs
    options = BatchingOptions(**{**_as_dict(defaults), **values})
    options.validate()
    return options


def _as_dict(options: BatchingOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def load_batching_options(path: str | None) -> BatchingOptions:
    """Options from `--batching_parameters_file` (TF Serving's defaults when no file)."""
    if not path:
        options = BatchingOptions()
        options.validate()
        return options
    try:
        with open(os.fspath(path), encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise BatchingConfigError(
            f"cannot read --batching_parameters_file={path}: {exc.strerror or exc}"
        ) from None
    try:
        params = parse_batching_parameters(text)
    except text_format.ParseError as exc:
        raise BatchingConfigError(
            f"--batching_parameters_file={path} is not a BatchingParameters text proto: {exc}. "
            "Write fields as TF Serving does, e.g. 'max_batch_size { value: 128 }'"
        ) from None
    try:
        return options_from_proto(params)
    except ValueError as exc:
        raise BatchingConfigError(f"--batching_parameters_file={path}: {exc}") from None
