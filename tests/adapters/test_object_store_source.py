"""The source over an object store: the same rules as local folders, plus download."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyserving.adapters.sources.object_store import ObjectStore, RemoteStorage, VersionCache
from pyserving.adapters.sources.storage_path import StoragePathSource
from tests.s3_server import (
    s3_filesystem,  # noqa: F401 - registers the `s3` fixture
    s3_server,
    use_s3_server,
)
from tests.util.sources import Recorder


def make_source(tmp_path: Path) -> tuple[StoragePathSource, Recorder, VersionCache]:
    cache = VersionCache(tmp_path / "cache", max_bytes=1 << 20)
    storage = RemoteStorage("mnist", ObjectStore("s3://models/mnist"), cache)
    published = Recorder()
    # A long poll period: "quiet" then means unchanged between polls, not old by the clock.
    source = StoragePathSource(
        "mnist", "s3://models/mnist", published, poll_wait_s=30, storage=storage
    )
    return source, published, cache


def test_discover_download_swap_and_delete(s3: object, tmp_path: Path) -> None:
    source, published, cache = make_source(tmp_path)
    # ignored below: fsspec's filesystems are untyped
    s3.pipe("models/mnist/1/saved_model.pb", b"v1")  # type: ignore[attr-defined]
    first = source.poll_once()  # just written: wait for an unchanged listing
    assert first is not None and first.versions == ()
    event = source.poll_once()
    assert event is not None
    local = Path(event.versions[0].path)
    assert (
        local.is_relative_to(tmp_path / "cache")
        and (local / "saved_model.pb").read_bytes() == b"v1"
    )

    # ignored below: fsspec's filesystems are untyped
    s3.pipe("models/mnist/2/variables/variables.index", b"half")  # type: ignore[attr-defined]
    assert source.poll_once() is None and source.poll_once() is None  # no saved_model.pb yet
    # ignored below: fsspec's filesystems are untyped
    s3.pipe("models/mnist/2/saved_model.pb", b"v2")  # type: ignore[attr-defined]
    source.poll_once()
    source.poll_once()
    # ignored below: fsspec's filesystems are untyped
    s3.rm("models/mnist/2", recursive=True)  # type: ignore[attr-defined]
    source.poll_once()
    assert published.versions() == [[], [1], [2], [1]]
    assert cache.used_bytes() == 2 + 6  # v1 and v2 stay cached until their versions end


def test_outage_keeps_what_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with s3_server() as endpoint:
        use_s3_server(monkeypatch, endpoint)
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("models")
        fs.pipe("models/mnist/1/saved_model.pb", b"v1")
        source, published, _ = make_source(tmp_path)
        source.poll_once()
        source.poll_once()
    # The store is gone (a network outage): nothing is un-aspired, polls back off.
    assert source.poll_once() is None
    assert source.next_wait_s() == 60.0
    assert published.versions() == [[], [1]]
