"""Object-store listing and the bounded download cache, against a real S3 HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyserving.adapters.sources.object_store import (
    CacheFull,
    ObjectStore,
    StoreError,
    VersionCache,
    is_remote,
    redact,
)
from tests.s3_server import (
    s3_filesystem,  # noqa: F401 - registers the `s3` fixture
    s3_server,
    use_s3_server,
)


def put_version(fs: object, version: str, complete: bool = True) -> None:
    if complete:
        # ignored below: fsspec's filesystems are untyped
        fs.pipe(f"models/mnist/{version}/saved_model.pb", b"graph" * 10)  # type: ignore[attr-defined]
    # ignored below: fsspec's filesystems are untyped
    fs.pipe(f"models/mnist/{version}/variables/variables.index", b"index")  # type: ignore[attr-defined]


def test_urls() -> None:
    assert is_remote("s3://bucket/m") and is_remote("gs://b/m") and is_remote("memory://x")
    assert not is_remote("/models/m") and not is_remote("file:///models/m")
    assert redact("s3://key:secret@bucket/m") == "s3://bucket/m"
    assert redact("s3://bucket/m") == "s3://bucket/m"


def test_lists_versions_by_the_local_rules(s3: object) -> None:
    put_version(s3, "1")
    put_version(s3, "0002")
    put_version(s3, "tmp")
    # ignored below: fsspec's filesystems are untyped
    s3.pipe("models/mnist/7", b"a file, not a folder")  # type: ignore[attr-defined]
    store = ObjectStore("s3://models/mnist")
    assert sorted(store.list_versions()) == [1, 2]


def test_download_is_verified_and_evicted(s3: object, tmp_path: Path) -> None:
    put_version(s3, "1")
    store = ObjectStore("s3://models/mnist")
    cache = VersionCache(tmp_path / "cache", max_bytes=10_000)
    local = cache.fetch(store, "mnist", 1, store.list_versions()[1])
    assert (local / "saved_model.pb").read_bytes() == b"graph" * 10
    assert (local / "variables" / "variables.index").read_bytes() == b"index"
    assert cache.used_bytes() == 55 and local.is_relative_to(cache.root)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".staging")]
    cache.evict("mnist", 1)
    assert not local.exists() and cache.used_bytes() == 0


def test_incomplete_version_is_not_downloaded(s3: object, tmp_path: Path) -> None:
    put_version(s3, "1", complete=False)
    store = ObjectStore("s3://models/mnist")
    cache = VersionCache(tmp_path / "cache", max_bytes=10_000)
    with pytest.raises(StoreError, match=r"no saved_model\.pb"):
        cache.fetch(store, "mnist", 1, store.list_versions()[1])


def test_cache_is_bounded(s3: object, tmp_path: Path) -> None:
    put_version(s3, "1")
    put_version(s3, "2")
    store = ObjectStore("s3://models/mnist")
    cache = VersionCache(tmp_path / "cache", max_bytes=100)
    versions = store.list_versions()
    cache.fetch(store, "mnist", 1, versions[1])
    with pytest.raises(CacheFull, match="--model_cache_max_bytes"):
        cache.fetch(store, "mnist", 2, versions[2])


def test_listing_errors_are_store_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with s3_server() as endpoint:
        use_s3_server(monkeypatch, endpoint)
        store = ObjectStore("s3://models/mnist")
    with pytest.raises(StoreError, match="s3://models/mnist") as info:
        store.list_versions()  # the server is gone
    assert "pyserving-test-secret" not in str(info.value)


def test_credentials_in_a_url_are_never_shown() -> None:
    with pytest.raises(StoreError) as info:
        ObjectStore("memory://key:secret@bucket/nope").list_versions()
    assert "secret" not in str(info.value) and "memory://bucket/nope" in str(info.value)
