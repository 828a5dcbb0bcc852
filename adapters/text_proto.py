"""The one parser of the text protos the server reads: --model_config_file, batching and
platform files, Session configs, --ssl_config_file, --monitoring_config_file.

Protobuf's own text format against the file's message (TF Serving's ParseProtoTextFile):
a file TF Serving accepts is accepted, and an unknown field is an error naming it. Each
caller wraps the ParseError in its own ConfigurationError, whose message names its flag.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import text_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def parse_text_proto(
    message_class: type[M], text: str, descriptor_pool: DescriptorPool | None = None
) -> M:
    """`text` as a `message_class`; text_format.ParseError names the bad field or line.
    `descriptor_pool` resolves the types an Any holds (the default pool if None)."""
    message = message_class()
    text_format.Parse(text, message, descriptor_pool=descriptor_pool)
    return message
