"""Flag-named text-proto files (`--monitoring_config_file`, `--ssl_config_file`): read and parse.

Parsed with protobuf's own text format against TF Serving's message (generated from
protos/): a file TF Serving accepts is accepted, and an unknown field is an error
naming it, as in TF Serving.
"""

from __future__ import annotations

from google.protobuf import text_format
from google.protobuf.message import Message


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
