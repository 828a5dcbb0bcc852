"""How the `tensorflow` platform loads and runs versions: from the flags, or from

--platform_config_file instead, as TF Serving's server.cc builds its SessionBundleConfig.

Without --platform_config_file (server.cc, in this order): the Session ConfigProto is
--tensorflow_session_config_file's (empty without it); `gpu_options.
per_process_gpu_memory_fraction` is set from --per_process_gpu_memory_fraction; its
intra- and inter-op thread counts are then set from the parallelism flags, always, so
they replace the file's even when the flags are 0 (TensorFlow decides). Batching,
tags, warm-up and TFLite come from their flags.

With --platform_config_file, its `tensorflow` SessionBundleConfig takes the place of all
of those flags (server.cc ignores them, --enable_batching included): its session_config
as it is, batching only when batching_parameters is present, its tags (`serve` when
none, as the bundle factory), warm-up only when enable_model_warmup is true (its
default is false there), and its TFLite and per-model batching fields. Fields pyserving
does not apply stop start-up, named.

XLA: TF Serving's main.cc calls DisableXlaCompilation() unless
--xla_cpu_compilation_enabled or --xla_gpu_compilation_enabled is true, so a model
whose functions must be compiled (jit_compile=True) fails with "XLA compilation
disabled" until it is allowed. `apply_xla_flags` calls the same function of the
process's TensorFlow library.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyserving.adapters.batching_config import (
    options_from_proto,
)
from pyserving.adapters.platform_config import (
    read_platform_config,
    read_session_config,
)
from pyserving.api.flag_compat import tensorflow_threads
from pyserving.api.startup_checks import batching_from_flags, with_idle
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import ConfigurationError

if TYPE_CHECKING:  # annotations only
    from pyserving.api.server_options import ServerOptions

# SessionBundleConfig fields applied here; the others stop start-up when set.
_APPLIED = frozenset(
    {
        "session_config",
        "batching_parameters",
        "saved_model_tags",
        "enable_model_warmup",
        "model_warmup_options",
        "prefer_tflite_model",
        "num_tflite_interpreters_per_pool",
        "num_tflite_pools",
        "enable_per_model_batching_params",
        "mixed_precision",
        # as its flag: only the signatures are kept from the MetaGraph either way
        "remove_unused_fields_from_bundle_metagraph",
    }
)


class SettingsError(ConfigurationError):
    """The flags or files cannot be used together; the message names them."""


@dataclass(frozen=True)
class TensorFlowSettings:
    session_config: bytes  # the serialized ConfigProto every Session is made with
    saved_model_tags: tuple[str, ...]
    enable_model_warmup: bool
    warmup_iterations: int
    prefer_tflite_model: bool
    num_tflite_pools: int
    num_tflite_interpreters_per_pool: int
    batching: BatchingOptions | None  # None: no batching
    per_model_batching: bool  # a version's batching_params.pbtxt replaces `batching`
    source: str  # "flags", or the platform config file that took their place


def settings_from_flags(options: ServerOptions) -> TensorFlowSettings:
    """The settings TF Serving's server.cc would build from these flags; a ConfigurationError
    (SettingsError, or the file's or flag's own) names what to change."""
    if options.platform_config_file:
        return _from_platform_config(options)
    from tensorflow.core.protobuf import config_pb2

    config = (
        read_session_config(options.tensorflow_session_config_file)
        if options.tensorflow_session_config_file
        else config_pb2.ConfigProto()
    )
    intra, inter = tensorflow_threads(options)
    fraction = options.per_process_gpu_memory_fraction
    if not 0.0 <= fraction <= 1.0:
        raise SettingsError(
            f"--per_process_gpu_memory_fraction={fraction} must be between 0.0 (TensorFlow "
            "decides) and 1.0 (all of the GPU's memory at start-up)"
        )
    config.gpu_options.per_process_gpu_memory_fraction = fraction
    config.intra_op_parallelism_threads = intra
    config.inter_op_parallelism_threads = inter
    _mixed_precision(config, options.mixed_precision)
    return TensorFlowSettings(
        session_config=config.SerializeToString(deterministic=True),
        saved_model_tags=tuple(t for t in options.saved_model_tags.split(",") if t),
        enable_model_warmup=options.enable_model_warmup,
        warmup_iterations=options.num_request_iterations_for_warmup,
        prefer_tflite_model=options.prefer_tflite_model,
        num_tflite_pools=options.num_tflite_pools,
        num_tflite_interpreters_per_pool=options.num_tflite_interpreters_per_pool,
        batching=batching_from_flags(options),  # as start-up checked it before TensorFlow
        per_model_batching=options.enable_batching and options.enable_per_model_batching_parameters,
        source="flags",
    )


def _from_platform_config(options: ServerOptions) -> TensorFlowSettings:
    path = options.platform_config_file
    legacy = read_platform_config(path)
    unapplied = sorted(field.name for field, _ in legacy.ListFields() if field.name not in _APPLIED)
    if unapplied:
        raise SettingsError(
            f"--platform_config_file={path}: SessionBundleConfig field(s) {unapplied} are "
            "not supported by pyserving; remove them"
        )
    batching = None
    if legacy.HasField("batching_parameters"):
        try:
            batching = options_from_proto(legacy.batching_parameters)
        except ValueError as exc:
            raise SettingsError(
                f"--platform_config_file={path}: batching_parameters: {exc}"
            ) from None
        batching = with_idle(batching, options.batching_idle_micros)
    warmup = legacy.model_warmup_options
    iterations = (
        warmup.num_request_iterations.value if warmup.HasField("num_request_iterations") else 1
    )
    config = legacy.session_config
    _mixed_precision(config, legacy.mixed_precision)
    return TensorFlowSettings(
        session_config=config.SerializeToString(deterministic=True),
        saved_model_tags=tuple(legacy.saved_model_tags) or ("serve",),
        enable_model_warmup=legacy.enable_model_warmup,
        warmup_iterations=max(1, iterations),
        prefer_tflite_model=legacy.prefer_tflite_model,
        num_tflite_pools=max(1, legacy.num_tflite_pools),
        num_tflite_interpreters_per_pool=max(1, legacy.num_tflite_interpreters_per_pool),
        batching=batching,
        per_model_batching=batching is not None and legacy.enable_per_model_batching_params,
        source=f"--platform_config_file={path}",
    )


def _mixed_precision(config: Any, mode: str) -> None:
    """The bundle factory's mixed_precision: "bfloat16" turns the oneDNN bfloat16 auto mixed
    precision rewrite on; any other non-empty value is logged and left alone, as there."""
    if not mode:
        return
    if mode == "bfloat16":
        from tensorflow.core.protobuf import rewriter_config_pb2

        rewrite = config.graph_options.rewrite_options
        rewrite.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
        return
    import structlog

    structlog.get_logger(__name__).warning(
        "mixed_precision_not_supported",
        mode=mode,
        detail=f"{mode} auto mixed precision is not supported. Valid option: bfloat16",
    )


def xla_compilation_allowed(options: ServerOptions) -> bool:
    return bool(options.xla_cpu_compilation_enabled or options.xla_gpu_compilation_enabled)


@functools.cache
def disable_xla_compilation() -> None:
    """tensorflow::DisableXlaCompilation() in the process's TensorFlow library: from then
    on an XLA compilation fails with "XLA compilation disabled" (once per process)."""
    import tensorflow as tf

    library = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), "libtensorflow_cc.so.2"))
    library["_ZN10tensorflow21DisableXlaCompilationEv"]()


def apply_xla_flags(options: ServerOptions) -> bool:
    """As main.cc: XLA compilation off unless one of the two XLA flags allows it."""
    if xla_compilation_allowed(options):
        return True
    disable_xla_compilation()
    return False


def session_config_text(config: bytes) -> str:
    """The ConfigProto on one line, as a log shows it."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import config_pb2

    return text_format.MessageToString(config_pb2.ConfigProto.FromString(config), as_one_line=True)
