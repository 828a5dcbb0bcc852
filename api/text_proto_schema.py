"""Message classes for TF Serving config protos that the `tensorflow-serving-api` wheel lacks.

TF Serving reads several flags' files as text protos (`--monitoring_config_file`,
`--ssl_config_file`) whose `.proto` files are not in the pip package. Each is rebuilt
here from a small field table with TF Serving's exact package, message names and field
numbers, in a private descriptor pool (so a future wheel that ships the real file cannot
clash), and parsed with protobuf's own text format: a file TF Serving accepts is
accepted, and an unknown field is an error naming it, as in TF Serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import Message

_F = descriptor_pb2.FieldDescriptorProto
SCALAR_TYPES = {"bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "int32": _F.TYPE_INT32}

# (field name, number, type): a scalar type name above, or ".package.Message" for a message.
FieldTable = Sequence[tuple[str, int, str]]


def build_message_classes(
    file_name: str, package: str, messages: Mapping[str, FieldTable]
) -> dict[str, type[Message]]:
    """proto3 message classes, by name, for one `.proto` file's worth of messages."""
    file = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax="proto3")
    for message_name, fields in messages.items():
        message = file.message_type.add(name=message_name)
        for name, number, type_name in fields:
            field = message.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
            if type_name in SCALAR_TYPES:
                field.type = SCALAR_TYPES[type_name]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in messages
    }


def parse_text(message_class: type[Message], text: str) -> Message:
    """Parse a text proto; raises text_format.ParseError naming the bad field or line."""
    message = message_class()
    text_format.Parse(text, message)
    return message


def read_flag_file(flag: str, path: str, error: type[Exception]) -> str:
    """The text of the file a flag names; `error` says which flag to fix if it can't be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise error(f"cannot read --{flag}={path} ({exc.strerror}); fix the path") from None
