"""The model config the server runs now, and the four ways it changes: start-up, the
polled --model_config_file, ModelService.HandleReloadConfigRequest, and the model
repository API (one model loaded or unloaded, adapters/model_repository.py).

All go through `_apply`: diff against the running config, replace the sources that
changed, publish the new labels and a `ConfigReloaded` record. A file that does not
parse or validate is logged once per distinct content and changes nothing, so a bad
edit never takes down what serves.

Which change wins, per model: the last one. The config in force is the base config
(start-up, the file, the RPC) with the repository API's per-model changes laid over it.
HandleReloadConfigRequest states the whole config, so it replaces the base and drops
every per-model change. A polled file edit replaces the base but drops only the changes
of the models the edit itself added, removed or changed: a file that did not change a
model does not undo a repository load or unload of it. Before a repository change, a
file edit the poller has not read yet is applied first, so the order is the order the
changes were made in.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping

import structlog
from google.protobuf.message import Message

from pyserving.adapters.model_config import (
    ConfigDiff,
    ConfigError,
    ModelConfig,
    ServerConfig,
    diff,
    from_proto,
    parse_model_server_config,
)
from pyserving.adapters.sources.model_sources import ModelSources
from pyserving.adapters.sources.storage_path import VersionStorage
from pyserving.engine.errors import invalid_argument
from pyserving.engine.events import ConfigReloaded, Event, VersionLabelsSet
from pyserving.engine.manager import Manager
from pyserving.statemachines.servable_version import State

log = structlog.get_logger("pyserving.config")

_MOVING = (State.NEW, State.LOADING, State.UNLOADING)


class LiveConfig:
    def __init__(
        self,
        initial: ServerConfig,
        publish: Callable[[Event], object],
        manager: Manager,
        wait_idle: Callable[[float], object],
        source_poll_wait_s: float,
        config_file: str = "",
        config_poll_wait_s: float = 0.0,
        storage_for: Callable[[ModelConfig], VersionStorage] | None = None,
    ) -> None:
        self._initial = initial
        self._publish = publish
        self._manager = manager
        self._wait_idle = wait_idle
        self._sources = ModelSources(publish, source_poll_wait_s, storage_for)
        self._config_file = config_file
        self._config_poll_wait_s = config_poll_wait_s
        self._current = ServerConfig(())
        self._base = ServerConfig(())  # from start-up, the file or the RPC
        # The repository API's per-model changes over the base: a config, or None: removed.
        self._overrides: dict[str, ModelConfig | None] = {}
        self._lock = threading.RLock()  # check_file and apply_superseding_file hold it
        self._last_file_text: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def current(self) -> ServerConfig:
        return self._current

    def model_names(self) -> list[str]:
        return self._current.names

    def platform_of(self, model: str) -> str:
        """The model's platform in the config in force (asked once per aspired version)."""
        config = self._current.get(model) or self._initial.get(model)
        if config is None:
            raise LookupError(f"model {model!r} is no longer configured")
        return config.platform

    def start(self) -> None:
        self.apply(self._initial, origin=self._config_file or "flags")
        self._last_file_text = self._read_file()
        if self._config_file and self._config_poll_wait_s > 0:
            self._watcher = threading.Thread(
                target=self._watch, name="model-config-watcher", daemon=True
            )
            self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._sources.stop()

    def apply(self, new: ServerConfig, origin: str) -> ConfigDiff:
        """Make `new` the whole running config (start-up, the RPC); returns what changed.
        Every per-model change of the repository API is dropped: this is the last change."""
        with self._lock:
            self._base = new
            self._overrides.clear()
            return self._apply(new, origin)

    def apply_file(self, new: ServerConfig, origin: str) -> ConfigDiff:
        """A polled file edit: `new` becomes the base; a repository change of a model
        survives unless the edit added, removed or changed that model."""
        with self._lock:
            edit = diff(self._base, new)
            for name in (
                *edit.added,
                *edit.removed,
                *edit.changed,
                *edit.relabelled,
                *edit.relogged,
            ):
                self._overrides.pop(name, None)
            self._base = new
            return self._apply(self._effective(), origin)

    def change_models(self, changes: Mapping[str, ModelConfig | None], origin: str) -> ConfigDiff:
        """Add or replace (a config) or remove (None) single models over the base."""
        with self._lock:
            if self._config_file and self._config_poll_wait_s > 0:
                self.check_file()  # an edit made before this change is applied before it
            for name, model in changes.items():
                if model is None and self._base.get(name) is None:
                    self._overrides.pop(name, None)  # nothing of the base to hide
                else:
                    self._overrides[name] = model
            return self._apply(self._effective(), origin)

    def _effective(self) -> ServerConfig:
        """The base with the per-model changes laid over it (base order, then the added)."""
        models = []
        for model in self._base.models:
            replaced = self._overrides.get(model.name, model)
            if replaced is not None:
                models.append(replaced)
        for name, added in self._overrides.items():
            if added is not None and self._base.get(name) is None:
                models.append(added)
        return ServerConfig(tuple(models))

    def _apply(self, new: ServerConfig, origin: str) -> ConfigDiff:
        """Make `new` the running config; returns what changed."""
        with self._lock:
            old = self._current
            changes = diff(old, new)
            if changes.empty:
                return changes
            for name in changes.removed:
                self._publish(VersionLabelsSet(model=name, labels={}))
            for name in (*changes.added, *changes.relabelled):
                model = new.get(name)
                assert model is not None
                self._publish(VersionLabelsSet(model=name, labels=dict(model.labels)))
            # `current` first: a source's first poll may aspire a version at once, and the
            # manager then looks up the model's platform in the config in force.
            self._current = new
            self._sources.apply(new, changes)
            self._publish(
                ConfigReloaded(
                    origin=origin,
                    models=tuple(new.names),
                    added=changes.added,
                    removed=changes.removed,
                )
            )
            log.info(
                "model_config_applied",
                origin=origin,
                models=new.names,
                added=list(changes.added),
                removed=list(changes.removed),
                changed=list(changes.changed),
                relabelled=list(changes.relabelled),
                relogged=list(changes.relogged),
            )
            return changes

    def apply_superseding_file(self, new: ServerConfig, origin: str) -> ConfigDiff:
        """Apply a config from elsewhere (an RPC): the file's text as it is now counts as
        read, so only an edit made after this replaces `new`. Without this, an edit the
        poller had not read yet would undo the RPC's config on its next poll."""
        with self._lock:
            self._last_file_text = self._read_file()
            return self.apply(new, origin)

    def _read_file(self) -> str | None:
        if not self._config_file:
            return None
        try:
            with open(self._config_file, encoding="utf-8") as f:
                return f.read()
        except OSError:
            return None

    async def reload(self, new: ServerConfig, origin: str) -> list[str]:
        """Apply `new` and wait until its models settle (versions still being copied
        included); the load errors, if any. The caller's deadline bounds the wait."""
        changes = await asyncio.to_thread(self.apply_superseding_file, new, origin)
        return await self.settle([*new.names, *changes.removed])

    async def reload_message(self, message: Message) -> list[str]:
        """HandleReloadConfigRequest's ModelServerConfig: parsed (INVALID_ARGUMENT when it
        does not), then `reload`; the engine's `model_admin.Reload`."""
        try:
            new = from_proto(message, origin="ReloadConfigRequest.config")
        except ConfigError as exc:
            raise invalid_argument(str(exc)) from None
        return await self.reload(new, "HandleReloadConfigRequest")

    async def change(self, changes: Mapping[str, ModelConfig | None], origin: str) -> list[str]:
        """`change_models`, then wait until those models settle; the load errors."""
        await asyncio.to_thread(self.change_models, changes, origin)
        return await self.settle(list(changes))

    async def settle(self, watched: list[str]) -> list[str]:
        """Wait until no version of `watched` is moving; their load errors, if any."""
        while True:
            # Order matters: once no source is copying, what it found is on the bus;
            # waiting for the bus to go idle then makes the manager's states current.
            copying = any(self._sources.copying(name) for name in watched)
            await asyncio.to_thread(self._wait_idle, 5.0)
            if not copying:
                settled, errors = self._settled(watched)
                if settled:
                    await asyncio.to_thread(self._wait_idle, 5.0)  # labels follow transitions
                    return errors
            await asyncio.sleep(0.05)

    def _settled(self, models: list[str]) -> tuple[bool, list[str]]:
        errors: list[str] = []
        for name in models:
            for status in self._manager.statuses(name) or []:
                if status.state in _MOVING:
                    return False, []
                if status.state == State.ERROR:
                    errors.append(f"model {name} version {status.version}: {status.error}")
        return True, errors

    # ------------------------------------------------------------- the file
    def _watch(self) -> None:
        while not self._stop.wait(self._config_poll_wait_s):
            try:
                self.check_file()
            except Exception:
                log.exception("model_config_poll_failed", path=self._config_file)

    def check_file(self) -> bool:
        """Re-read the config file; apply it if it changed and is valid. True if applied."""
        try:
            with open(self._config_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            if self._last_file_text is not None:
                log.error(
                    "model_config_unreadable",
                    path=self._config_file,
                    error=str(exc),
                    hint="the last good config keeps running",
                )
                self._last_file_text = None
            return False
        with self._lock:  # compared and applied at once: no RPC's config comes between
            if text == self._last_file_text:
                return False
            self._last_file_text = text
            started = time.monotonic()
            try:
                new = parse_model_server_config(text, origin=self._config_file)
            except ConfigError as exc:
                log.error(
                    "model_config_rejected",
                    path=self._config_file,
                    error=str(exc),
                    hint="fix the file; the last good config keeps running",
                )
                return False
            self.apply_file(new, origin=self._config_file)
        log.debug("model_config_checked", seconds=round(time.monotonic() - started, 4))
        return True
