"""`--batching_parameters_file`: TF Serving's `BatchingParameters` text proto, read as it is.

The `tensorflow-serving-api` wheel ships no `tensorflow_serving.servables` protos, so the
message class is built here from a descriptor with TF Serving's exact package, name,
field numbers and types. Source: tensorflow/serving,
tensorflow_serving/servables/tensorflow/session_bundle_config.proto, `message
BatchingParameters` (fields 1-5 are wrapper types, 6 `repeated int64`, 7 `bool`,
8 `BoolValue enable_large_batch_splitting`, 9 `Int64Value max_execution_batch_size`).
The same wire and text format means a file written for `tensorflow_model_server`
parses here unchanged, and one with a misspelt field is refused the same way.
"""

from __future__ import annotations

import os
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from pyserving.engine.batching_params import BatchingOptions

PROTO_FILE = "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"
MESSAGE = "tensorflow.serving.BatchingParameters"

_F = descriptor_pb2.FieldDescriptorProto
# (name, number, label, type, type_name)
_FIELDS = (
    ("max_batch_size", 1, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, _F.LABEL_REPEATED, _F.TYPE_INT64, ""),
    ("pad_variable_length_inputs", 7, _F.LABEL_OPTIONAL, _F.TYPE_BOOL, ""),
    (
        "enable_large_batch_splitting",
        8,
        _F.LABEL_OPTIONAL,
        _F.TYPE_MESSAGE,
        ".google.protobuf.BoolValue",
    ),
    (
        "max_execution_batch_size",
        9,
        _F.LABEL_OPTIONAL,
        _F.TYPE_MESSAGE,
        ".google.protobuf.Int64Value",
    ),
)


class BatchingConfigError(ValueError):
    """The batching file cannot be used; the message names the file and what to change."""


def _build_message_class() -> type[Any]:
    # A private pool: never clashes with another definition of the same file elsewhere.
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name=PROTO_FILE,
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    message = file.message_type.add(name="BatchingParameters")
    for name, number, label, type_, type_name in _FIELDS:
        field = message.field.add(name=name, number=number, label=label, type=type_)
        if type_name:
            field.type_name = type_name
        if label == _F.LABEL_REPEATED:
            field.options.packed = True  # proto3's default for repeated scalars
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(MESSAGE))


BatchingParameters = _build_message_class()


def parse_text(text: str) -> Any:
    """A `BatchingParameters` message from its text form (raises text_format.ParseError)."""
    return text_format.Parse(text, BatchingParameters())


def options_from_proto(params: Any) -> BatchingOptions:
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
        params = parse_text(text)
    except text_format.ParseError as exc:
        raise BatchingConfigError(
            f"--batching_parameters_file={path} is not a BatchingParameters text proto: {exc}. "
            "Write fields as TF Serving does, e.g. 'max_batch_size { value: 128 }'"
        ) from None
    try:
        return options_from_proto(params)
    except ValueError as exc:
        raise BatchingConfigError(f"--batching_parameters_file={path}: {exc}") from None
