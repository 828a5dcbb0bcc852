"""Flag-named text-proto files (`--monitoring_config_file`, `--ssl_config_file`): read.

adapters/text_proto.py parses them, as it does every text proto the server reads.
"""

from __future__ import annotations


def read_flag_file(flag: str, path: str, error: type[Exception]) -> str:
    """The text of the file a flag names; `error` says which flag to fix if it can't be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise error(f"cannot read --{flag}={path} ({exc.strerror}); fix the path") from None
