"""Model versions in object stores (s3://, gs://, any fsspec URL), loaded from a local cache.

TensorFlow loads from local disk, so a remote version is first downloaded into
`--model_cache_dir`: into a staging folder, checked against the remote listing (every
file present with its size, a saved_model.pb among them), then renamed into place. The
cache is bounded in bytes; an entry is removed when its version ends. Credentials come
from the store library's own chain (environment, config files, instance metadata);
URLs are logged without any user:password part.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import structlog

from pyserving.adapters.sources.storage_path import SAVED_MODEL_FILES, parse_version
from pyserving.engine.events import Event, Transition

log = structlog.get_logger("pyserving.object_store")

Manifest = tuple[tuple[str, int], ...]  # (path relative to the version folder, size)


def is_remote(url: str) -> bool:
    """True for URLs with a scheme other than file:// (plain paths are local)."""
    scheme = urlsplit(url).scheme
    return bool(scheme) and scheme != "file" and len(scheme) > 1  # "C:" is not a scheme


def redact(url: str) -> str:
    """The URL without credentials, safe to log."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class StoreError(OSError):
    """Listing or reading the store failed (network, permissions, throttling)."""


class ObjectStore:
    """One model's base path in an fsspec store."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        # One client per model source, never fsspec's shared instance: its settings
        # (endpoint, credentials) are read when the source is made.
        options = {"skip_instance_cache": True, **(storage_options or {})}
        self.fs, self.root = fsspec.core.url_to_fs(url, **options)

    def list_versions(self) -> dict[int, str]:
        """Version number → remote folder path, by the same naming rules as local folders."""
        try:
            self.fs.invalidate_cache(self.root)
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError as exc:
            raise StoreError(f"{redact(self.url)} does not exist") from exc
        except Exception as exc:  # botocore/gcsfs raise their own types: all mean "not now"
            raise StoreError(f"listing {redact(self.url)} failed: {exc}") from exc
        found: dict[int, str] = {}
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            version = parse_version(name)
            if version is not None and entry.get("type") == "directory":
                found[version] = entry["name"].rstrip("/")
        return found

    def manifest(self, version_path: str) -> Manifest:
        """Every file below a version folder with its size: what a complete copy must hold."""
        return self.listing(version_path)[0]

    def listing(self, version_path: str) -> tuple[Manifest, float | None]:
        """The manifest, and the newest file's modification time when the store tells it."""
        try:
            self.fs.invalidate_cache(version_path)
            files = self.fs.find(version_path, detail=True)
        except Exception as exc:
            raise StoreError(f"listing {redact(version_path)} failed: {exc}") from exc
        prefix = version_path.rstrip("/") + "/"
        manifest: list[tuple[str, int]] = []
        newest: float | None = None
        for name, info in files.items():
            if info.get("type") == "directory" or not name.startswith(prefix):
                continue
            manifest.append((name[len(prefix) :], int(info.get("size") or 0)))
            modified = info.get("LastModified") or info.get("updated") or info.get("mtime")
            stamp = _timestamp(modified)
            if stamp is not None:
                newest = stamp if newest is None else max(newest, stamp)
        return tuple(sorted(manifest)), newest

    def download(self, version_path: str, manifest: Manifest, into: Path) -> None:
        for relative, _ in manifest:
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fs.get_file(f"{version_path.rstrip('/')}/{relative}", str(target))
            except Exception as exc:
                raise StoreError(f"downloading {redact(version_path)}/{relative}: {exc}") from exc


def _timestamp(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def manifest_is_complete(
    manifest: Manifest, marker_files: Sequence[str] = SAVED_MODEL_FILES
) -> bool:
    return any(relative in marker_files for relative, _ in manifest)


class CacheFull(Exception):
    """Downloading this version would exceed --model_cache_max_bytes."""


@dataclass(frozen=True)
class CachedVersion:
    path: Path
    size: int


class VersionCache:
    """A bounded local folder of downloaded versions: `<cache_dir>/<model>/<version>`."""

    def __init__(self, cache_dir: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(cache_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], CachedVersion] = {}

    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def fetch(
        self,
        store: ObjectStore,
        model: str,
        version: int,
        remote_path: str,
        marker_files: Sequence[str] = SAVED_MODEL_FILES,
    ) -> Path:
        """Download (once) and verify a version; returns its local folder."""
        key = (model, version)
        with self._lock:
            if key in self._entries:
                return self._entries[key].path
        manifest = store.manifest(remote_path)
        if not manifest_is_complete(manifest, marker_files):
            raise StoreError(f"{redact(remote_path)} holds no {' or '.join(marker_files)} yet")
        size = sum(s for _, s in manifest)
        if self.used_bytes() + size > self.max_bytes:
            raise CacheFull(
                f"version {version} of {model} needs {size} bytes; the cache holds "
                f"{self.used_bytes()} of {self.max_bytes}: raise --model_cache_max_bytes"
            )
        final = self.root / _safe(model) / str(version)
        staging = self.root / f".staging-{_safe(model)}-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            store.download(remote_path, manifest, staging)
            _verify(staging, manifest)
            shutil.rmtree(final, ignore_errors=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        with self._lock:
            self._entries[key] = CachedVersion(final, size)
        log.info("version_downloaded", model=model, version=version, bytes=size, path=str(final))
        return final

    def evict(self, model: str, version: int) -> None:
        with self._lock:
            entry = self._entries.pop((model, version), None)
        if entry is not None:
            shutil.rmtree(entry.path, ignore_errors=True)
            log.info("version_evicted", model=model, version=version, bytes=entry.size)


def _safe(model: str) -> str:
    """Model names come from config, not clients; still, never let one escape the cache."""
    return model.replace("/", "_").replace("\\", "_").lstrip(".") or "_"


def _verify(folder: Path, manifest: Manifest) -> None:
    for relative, size in manifest:
        path = folder / relative
        if not path.is_file() or path.stat().st_size != size:
            raise StoreError(f"download of {relative} is incomplete; will retry")


class RemoteStorage:
    """A model's versions in an object store, as the source sees them (VersionStorage)."""

    def __init__(
        self,
        model: str,
        store: ObjectStore,
        cache: VersionCache,
        marker_files: Sequence[str] = SAVED_MODEL_FILES,
    ) -> None:
        self.model = model
        self.store = store
        self.cache = cache
        self.marker_files = tuple(marker_files)

    def list_versions(self) -> dict[int, str]:
        return self.store.list_versions()

    def inspect(self, path: str) -> tuple[Manifest, float] | None:
        manifest, newest = self.store.listing(path)
        if not manifest_is_complete(manifest, self.marker_files):
            return None
        # Without modification times, treat the version as just written: the source then
        # waits for one poll with an unchanged listing before taking it.
        return manifest, time.time() if newest is None else newest

    def materialize(self, version: int, path: str) -> str:
        return str(self.cache.fetch(self.store, self.model, version, path, self.marker_files))


class CacheEvictor:
    """Bus subscriber: drop a version's cached download once its machine reaches `end`."""

    def __init__(self, cache: VersionCache) -> None:
        self.cache = cache

    def __call__(self, event: Event) -> None:
        if isinstance(event, Transition) and event.dst == "end":
            self.cache.evict(event.model, event.version)
