"""One storage path source per configured model, started, replaced, stopped as the config changes.

A removed model's source stops and the model's aspired set becomes empty, so the
manager unloads its versions through the usual policy; a model whose base path,
platform or version selection changed gets a fresh source, whose first poll publishes the
new aspired set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from pyserving.adapters.model_config import ConfigDiff, ModelConfig, ServerConfig
from pyserving.adapters.sources.storage_path import StoragePathSource, VersionStorage
from pyserving.engine.events import AspiredVersions, Event

log = structlog.get_logger("pyserving.source")

CONFIG_SOURCE = "model_config"


class ModelSources:
    """The configured models' sources (TF Serving's ServerCore keeps them the same way)."""

    def __init__(
        self,
        publish: Callable[[Event], object],
        poll_wait_s: float,
        storage_for: Callable[[ModelConfig], VersionStorage] | None = None,
    ) -> None:
        self._publish = publish
        self._poll_wait_s = poll_wait_s
        self._storage_for = storage_for
        self._sources: dict[str, StoragePathSource] = {}
        self._lock = threading.Lock()

    def apply(self, new: ServerConfig, changes: ConfigDiff) -> None:
        """Start, replace and stop sources so they match `new`."""
        with self._lock:
            for name in changes.removed:
                self._stop(name)
                self._publish(AspiredVersions(model=name, versions=(), source=CONFIG_SOURCE))
            for name in (*changes.changed, *changes.added):
                self._stop(name)
                model = new.get(name)
                assert model is not None
                source = StoragePathSource(
                    name,
                    model.base_path,
                    self._publish,
                    version_selection=model.version_selection,
                    poll_wait_s=self._poll_wait_s,
                    storage=self._storage_for(model) if self._storage_for else None,
                )
                self._sources[name] = source
                source.start()

    def copying(self, model: str) -> bool:
        """True while one of the model's version folders is still being written."""
        with self._lock:
            source = self._sources.get(model)
            return source is not None and source.copying()

    def stop(self) -> None:
        with self._lock:
            for name in list(self._sources):
                self._stop(name)

    def _stop(self, name: str) -> None:
        source = self._sources.pop(name, None)
        if source is not None:
            source.stop()
