"""A real S3-compatible HTTP server (moto's standalone server) on loopback, for tests.

Importing this module checks the object-store test requirements (s3fs, moto): a test
module that imports it is skipped without them, or fails where CI is set."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.util.requirements import require_module

_HINT = "install pyserving[test] (s3fs and moto[server]) for object-store support"
require_module("s3fs", _HINT)
ThreadedMotoServer = require_module("moto.server", _HINT).ThreadedMotoServer

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "pyserving-test",
    "AWS_SECRET_ACCESS_KEY": "pyserving-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server(port: int = 0, reset: bool = True) -> Iterator[str]:
    """Start a server; yields its endpoint URL. Stopping it simulates an outage."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    # moto keeps its buckets in process-wide state: start every server empty, unless it
    # is the same store coming back after an outage.
    if reset:
        urllib.request.urlopen(
            urllib.request.Request(f"http://{host}:{bound}/moto-api/reset", method="POST")
        )
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def s3_settings(endpoint: str) -> dict[str, str]:
    """Environment variables that point botocore (hence s3fs) at the test server."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "1"}


def use_s3_server(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point this test process's S3 clients at the test server, fail fast on outages."""
    for key, value in s3_settings(endpoint).items():
        monkeypatch.setenv(key, value)


@pytest.fixture(name="s3")
def s3_filesystem(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The `s3` fixture: an s3fs file system on a fresh server of its own, holding an empty
    `models` bucket (a test module imports it to use it)."""
    with s3_server() as endpoint:
        use_s3_server(monkeypatch, endpoint)
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("models")
        yield fs
