"""TF Serving's Session and platform config files, read as `tensorflow_model_server` reads them.

- `--tensorflow_session_config_file`: a text `tensorflow.ConfigProto` (TensorFlow's own
  class).
- `--platform_config_file`: a text `tensorflow.serving.PlatformConfigMap` (the
  tensorflow-serving-api wheel's class) whose `tensorflow` entry's `source_adapter_config`
  is an Any holding a `SavedModelBundleSourceAdapterConfig`, whose `legacy_config` is a
  `SessionBundleConfig`.
- `batching_params.pbtxt` in a version folder (--enable_per_model_batching_parameters): a
  text `BatchingParameters`.

The wheel ships neither SessionBundleConfig nor SavedModelBundleSourceAdapterConfig, and
SessionBundleConfig holds TensorFlow's ConfigProto, whose .proto source the TensorFlow
wheel does not ship either (only its Python module), so protoc cannot compile a copy.
Their descriptors are therefore built here, once, from TF Serving's field names, numbers
and types (session_bundle_config.proto, saved_model_bundle_source_adapter.proto), on top
of TensorFlow's registered config.proto and pyserving's BatchingParameters; a file
written for `tensorflow_model_server` parses unchanged, and a misspelt field is refused
as there. `in_graph_batching_parameters` (7) is left out: its BatchingOptions message is
not in the TensorFlow wheel's Python modules, so a file using it is refused by name.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2 as _wrappers  # noqa: F401  (registers wrappers.proto)
from tensorflow.core.protobuf import config_pb2, named_tensor_pb2
from tensorflow_serving.config import platform_config_pb2

from pyserving.adapters.protos import batching_parameters_pb2
from pyserving.adapters.text_proto import parse_text_proto
from pyserving.engine.errors import ConfigurationError

SOURCE_ADAPTER_CONFIG = "tensorflow.serving.SavedModelBundleSourceAdapterConfig"
BATCHING_PARAMS_FILE = "batching_params.pbtxt"  # bundle_factory_util.cc kBatchingParamsFilename

_F = descriptor_pb2.FieldDescriptorProto
# SessionBundleConfig's fields: (name, number, type, label, message type name)
_SESSION_BUNDLE_CONFIG = (
    ("session_target", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ("session_config", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".tensorflow.ConfigProto"),
    (
        "batching_parameters",
        3,
        _F.TYPE_MESSAGE,
        _F.LABEL_OPTIONAL,
        ".tensorflow.serving.BatchingParameters",
    ),
    (
        "session_run_load_threadpool_index",
        4,
        _F.TYPE_MESSAGE,
        _F.LABEL_OPTIONAL,
        ".google.protobuf.Int32Value",
    ),
    ("experimental_transient_ram_bytes_during_load", 5, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ("saved_model_tags", 6, _F.TYPE_STRING, _F.LABEL_REPEATED, ""),
    (
        "experimental_fixed_input_tensors",
        778,
        _F.TYPE_MESSAGE,
        _F.LABEL_REPEATED,
        ".tensorflow.NamedTensorProto",
    ),
    ("enable_model_warmup", 779, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    (
        "model_warmup_options",
        780,
        _F.TYPE_MESSAGE,
        _F.LABEL_OPTIONAL,
        ".tensorflow.serving.ModelWarmupOptions",
    ),
    ("enable_session_metadata", 781, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("remove_unused_fields_from_bundle_metagraph", 782, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("prefer_tflite_model", 783, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("resource_estimation_uses_validation_result", 784, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("num_tflite_interpreters", 785, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
    ("num_tflite_interpreters_per_pool", 786, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
    ("num_tflite_pools", 787, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
    ("wrap_session_with_no_threading_params", 788, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("enable_per_model_batching_params", 789, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("enable_saved_model_config", 790, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ("mixed_precision", 791, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
)
_MODEL_WARMUP_OPTIONS = (
    (
        "num_request_iterations",
        1,
        _F.TYPE_MESSAGE,
        _F.LABEL_OPTIONAL,
        ".google.protobuf.Int32Value",
    ),
    (
        "num_model_warmup_threads",
        2,
        _F.TYPE_MESSAGE,
        _F.LABEL_OPTIONAL,
        ".google.protobuf.Int32Value",
    ),
    ("model_name", 3, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ("model_version", 4, _F.TYPE_INT64, _F.LABEL_OPTIONAL, ""),
    ("enable_all_batch_sizes_warmup", 5, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
)


def _message(name: str, fields: tuple[tuple[str, int, int, int, str], ...]) -> Any:
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, type_, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=type_, label=label)
        if type_name:
            field.type_name = type_name
    return message


@functools.cache
def _classes() -> tuple[type, type, type]:
    """(SessionBundleConfig, SavedModelBundleSourceAdapterConfig, ModelWarmupOptions), made
    once in the default pool, where TensorFlow's and pyserving's files already are."""
    pool = descriptor_pool.Default()
    name = "pyserving/adapters/session_bundle_config.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name=name,
            package="tensorflow.serving",
            syntax="proto3",
            dependency=[
                "google/protobuf/wrappers.proto",
                config_pb2.DESCRIPTOR.name,
                named_tensor_pb2.DESCRIPTOR.name,
                batching_parameters_pb2.DESCRIPTOR.name,
            ],
        )
        file.message_type.append(_message("ModelWarmupOptions", _MODEL_WARMUP_OPTIONS))
        file.message_type.append(_message("SessionBundleConfig", _SESSION_BUNDLE_CONFIG))
        adapter = _message(
            "SavedModelBundleSourceAdapterConfig",
            (
                (
                    "legacy_config",
                    1000,
                    _F.TYPE_MESSAGE,
                    _F.LABEL_OPTIONAL,
                    ".tensorflow.serving.SessionBundleConfig",
                ),
            ),
        )
        file.message_type.append(adapter)
        pool.Add(file)
    session, adapter_config, warmup = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
        for n in (
            "SessionBundleConfig",
            "SavedModelBundleSourceAdapterConfig",
            "ModelWarmupOptions",
        )
    )
    return session, adapter_config, warmup


def session_bundle_config_class() -> type:
    return _classes()[0]


def source_adapter_config_class() -> type:
    return _classes()[1]


class PlatformConfigError(ConfigurationError):
    """A config file cannot be used; the message names the flag, the file and the fix."""


def _read(flag: str, path: str) -> str:
    try:
        with open(os.fspath(path), encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise PlatformConfigError(f"cannot read --{flag}={path}: {exc.strerror or exc}") from None


def read_session_config(path: str) -> config_pb2.ConfigProto:
    """`--tensorflow_session_config_file`: a text ConfigProto (ParseProtoTextFile)."""
    text = _read("tensorflow_session_config_file", path)
    try:
        return parse_text_proto(config_pb2.ConfigProto, text)
    except text_format.ParseError as exc:
        raise PlatformConfigError(
            f"--tensorflow_session_config_file={path} is not a tensorflow.ConfigProto text "
            f"proto: {exc}"
        ) from None


def read_platform_config(path: str) -> Any:
    """`--platform_config_file`: the `tensorflow` platform's SessionBundleConfig (its
    SavedModelBundleSourceAdapterConfig's legacy_config)."""
    text = _read("platform_config_file", path)
    _classes()  # the Any's type must be in the pool before the text is parsed
    try:
        platforms = parse_text_proto(
            platform_config_pb2.PlatformConfigMap, text, descriptor_pool.Default()
        )
    except text_format.ParseError as exc:
        raise PlatformConfigError(
            f"--platform_config_file={path} is not a tensorflow.serving.PlatformConfigMap "
            f"text proto: {exc}"
        ) from None
    others = sorted(set(platforms.platform_configs) - {"tensorflow"})
    if others:
        raise PlatformConfigError(
            f"--platform_config_file={path} configures platform(s) {others}: only "
            '"tensorflow" takes a source adapter config here (python needs none); remove them'
        )
    if "tensorflow" not in platforms.platform_configs:
        raise PlatformConfigError(
            f'--platform_config_file={path} has no "tensorflow" entry in platform_configs: '
            "add one holding a SavedModelBundleSourceAdapterConfig"
        )
    config = platforms.platform_configs["tensorflow"].source_adapter_config
    adapter = source_adapter_config_class()()
    if not config.Unpack(adapter):
        raise PlatformConfigError(
            f'--platform_config_file={path}: the "tensorflow" source_adapter_config holds '
            f"{config.TypeName() or 'nothing'}, not {SOURCE_ADAPTER_CONFIG}"
        )
    return adapter.legacy_config


def read_batching_parameters(path: str) -> batching_parameters_pb2.BatchingParameters:
    """A version folder's batching_params.pbtxt (GetPerModelBatchingParams)."""
    text = _read("enable_per_model_batching_parameters", path)
    try:
        return parse_text_proto(batching_parameters_pb2.BatchingParameters, text)
    except text_format.ParseError as exc:
        raise PlatformConfigError(f"{path} is not a BatchingParameters text proto: {exc}") from None
