"""What pyserving does with each of TF Serving's flags, and the helpers that read them.

The status of every `tensorflow_model_server` flag (main.cc) is a column of the one flag
table (`api/flags.py`); `TF_SERVING_FLAGS` is that column. No flag is silently ignored:
refused ones stop start-up here, naming themselves.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

import pyserving
from pyserving.api.flags import ACCEPTED, FLAGS, IMPLEMENTED, REFUSED, FlagSupport
from pyserving.engine.errors import ConfigurationError

if TYPE_CHECKING:  # annotations only
    from pyserving.api.server_options import ServerOptions

__all__ = ["ACCEPTED", "IMPLEMENTED", "REFUSED", "TF_SERVING_FLAGS", "FlagError", "FlagSupport"]

TF_SERVING_FLAGS: dict[str, FlagSupport] = {
    flag.name: flag.tf_serving for flag in FLAGS if flag.tf_serving is not None
}


def refused_flags(options: ServerOptions) -> list[str]:
    """A message for each flag asking for something pyserving does not support."""
    messages = []
    for name, support in TF_SERVING_FLAGS.items():
        if support.status != REFUSED or not hasattr(options, name):
            continue
        value = getattr(options, name)
        assert support.refuse_if is not None
        if support.refuse_if(value):
            messages.append(
                f"--{name}={value} is not supported by pyserving ({support.note}); remove it"
            )
    return messages


def version_text() -> str:
    """`tensorflow_model_server --version`: TF Serving prints its and TensorFlow's versions."""
    try:
        tensorflow = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tensorflow = "not installed"
    return (
        f"pyserving: {pyserving.__version__} (TensorFlow ModelServer compatible)\n"
        f"TensorFlow Library: {tensorflow}"
    )


class FlagError(ConfigurationError):
    """Flags that cannot be used together or parsed; the message names them."""


def check_credentials(options: ServerOptions) -> None:
    """TF Serving's server.cc: ALTS and an SSL config exclude each other, checked before
    either is read."""
    if options.use_alts_credentials and options.ssl_config_file:
        raise FlagError(
            "Either use_alts_credentials must be false or ssl_config_file must be empty."
        )


def tensorflow_threads(options: ServerOptions) -> tuple[int, int]:
    """(intra, inter) op threads from TF Serving's three flags, as its server.cc combines them."""
    session = options.tensorflow_session_parallelism
    intra = options.tensorflow_intra_op_parallelism
    inter = options.tensorflow_inter_op_parallelism
    if intra > 0 and inter > 0 and session > 0:
        raise FlagError(
            "Either configure --tensorflow_session_parallelism or "
            "(--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all."
        )
    combined = (intra, inter) if intra > 0 or inter > 0 else (session, session)
    if combined[0] < 0:
        # TensorFlow aborts the process on a negative intra-op pool (threadpool.cc's CHECK);
        # only inter-op takes a negative value: every op in the caller's thread.
        raise FlagError(
            f"intra-op parallelism {combined[0]} (from --tensorflow_intra_op_parallelism or "
            "--tensorflow_session_parallelism) must be 0 or more; to run ops in the "
            "calling thread give --tensorflow_intra_op_parallelism=N "
            "--tensorflow_inter_op_parallelism=-1"
        )
    return combined


def grpc_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`--grpc_channel_arguments=k=v,k2=v2`: int32 values as ints, others as strings."""
    arguments: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FlagError(
                f"--grpc_channel_arguments: {item!r} is not key=value; e.g. "
                "--grpc_channel_arguments=grpc.max_connection_age_ms=60000"
            )
        try:
            number = int(value)
        except ValueError:
            arguments.append((key, value))
            continue
        arguments.append((key, number) if -(1 << 31) <= number < (1 << 31) else (key, value))
    return arguments
