"""The folder named by --model_repository, as Triton's model repository: each subfolder
is one model's base path holding numbered version folders. The repository API lists
those models with their state, and loads or unloads one at a time.

A load adds the model to the config in force (latest-version selection, the platform its
versions' files name) and an unload removes it, both through the live config's path
(aspired versions, the version machines, the event log's ConfigReloaded records), so
what the API did replays with `pyserving replay` like any other change. Both answer once
the model is available or fully unloaded, or raise a ServingError with Triton's code
and wording (model_repository_manager.cc) for the failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from pyserving.adapters.live_config import LiveConfig
from pyserving.adapters.loaders.platforms import PLATFORMS
from pyserving.adapters.model_config import ModelConfig
from pyserving.adapters.sources.storage_path import parse_version
from pyserving.adapters.sources.version_selection import LatestVersions
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.manager import VersionStatus
from pyserving.engine.model_admin import IndexEntry
from pyserving.statemachines.servable_version import State

log = structlog.get_logger("pyserving.repository")

# Triton's ModelReadyState names, as RepositoryIndex reports them.
READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"
TRITON_STATE = {
    State.NEW: LOADING,
    State.LOADING: LOADING,
    State.AVAILABLE: READY,
    State.UNLOADING: UNLOADING,
    State.END: UNAVAILABLE,
    State.ERROR: UNAVAILABLE,
}
UNLOADED_REASON = "unloaded"  # Triton's reason for a version unloaded on purpose

LOAD_ORIGIN = "RepositoryModelLoad"
UNLOAD_ORIGIN = "RepositoryModelUnload"
LOAD_ALL_ORIGIN = "--model_repository_load_all"


@dataclass(frozen=True)
class RepositoryModel:
    """One model folder: its versions and the platform their files name (None: none do)."""

    name: str
    base_path: str
    versions: tuple[int, ...]
    platform: str | None

    def config(self) -> ModelConfig:
        assert self.platform is not None
        return ModelConfig(
            name=self.name,
            base_path=self.base_path,
            platform=self.platform,
            version_selection=LatestVersions(1),
        )


def detect_platform(version_paths: Sequence[str]) -> str | None:
    """The platform whose marker file the newest version holding any marker has:
    saved_model.pb(txt) or model.tflite → tensorflow, model.py → python."""
    for path in version_paths:
        for platform in PLATFORMS.values():
            if any(os.path.isfile(os.path.join(path, f)) for f in platform.marker_files):
                return platform.name
    return None


class ModelRepository:
    """Reads the repository folder; it is listed again on every call (no cache to go stale)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def scan(self) -> list[RepositoryModel]:
        """The model folders, by name: subfolders (not hidden) holding a numbered version
        folder. Files, hidden folders (a copy being staged) and folders without versions
        are not models."""
        models = []
        with os.scandir(self.root) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                model = self._read_model(entry.name, entry.path)
                if model is not None:
                    models.append(model)
        return models

    def find(self, name: str) -> RepositoryModel | None:
        """The model folder called `name`; matched against the listing, never joined into a
        path, so a name like '../x' finds nothing."""
        return next((m for m in self.scan() if m.name == name), None)

    @staticmethod
    def _read_model(name: str, path: str) -> RepositoryModel | None:
        versions: dict[int, str] = {}
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    version = parse_version(entry.name)
                    if version is not None and entry.is_dir():
                        versions.setdefault(version, entry.path)
        except OSError:
            return None
        if not versions:
            return None
        newest_first = [versions[v] for v in sorted(versions, reverse=True)]
        return RepositoryModel(name, path, tuple(sorted(versions)), detect_platform(newest_first))


def index_entries(
    models: Sequence[RepositoryModel],
    statuses: Callable[[str], list[VersionStatus] | None],
    ready_only: bool = False,
) -> list[IndexEntry]:
    """One row per known version of each model (Triton's RepositoryIndex); a model with no
    version known to the manager is its name alone, left out when `ready_only`."""
    entries: list[IndexEntry] = []
    for model in models:
        known = statuses(model.name) or []
        if not known:
            if not ready_only:
                entries.append(IndexEntry(model.name))
            continue
        for status in known:
            state = TRITON_STATE[status.state]
            if ready_only and state != READY:
                continue
            reason = status.error
            if state == UNAVAILABLE and not reason:
                reason = UNLOADED_REASON
            entries.append(IndexEntry(model.name, str(status.version), state, reason))
    return entries


def _unknown_model(name: str) -> ServingError:
    return ServingError(
        Code.INTERNAL, f"failed to load '{name}', failed to poll from model repository"
    )


class RepositoryControl:
    """The repository API's three operations over the live config (the engine's
    `model_admin.Repository`)."""

    def __init__(
        self,
        repository: ModelRepository,
        live_config: LiveConfig,
        statuses: Callable[[str], list[VersionStatus] | None],
    ) -> None:
        self.repository = repository
        self._live = live_config
        self._statuses = statuses

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        try:
            models = self.repository.scan()
        except OSError as exc:
            raise ServingError(
                Code.INTERNAL, f"failed to read the model repository {self.repository.root}: {exc}"
            ) from None
        return index_entries(models, self._statuses, ready_only)

    def load_all(self) -> list[str]:
        """Add every model folder to the config in force at once (start-up); the names."""
        found = self.repository.scan()
        models = [m for m in found if m.platform is not None]
        skipped = [m.name for m in found if m.platform is None]
        if skipped:
            log.warning(
                "model_repository_folders_skipped",
                models=skipped,
                reason="no version folder holds a model file",
            )
        self._live.change_models({m.name: m.config() for m in models}, LOAD_ALL_ORIGIN)
        return [m.name for m in models]

    async def load(self, name: str) -> None:
        """Add `name` to the config in force and wait until it serves. A load that fails
        takes the model out again (its versions report UNAVAILABLE with the error)."""
        try:
            model = self.repository.find(name)
        except OSError:
            model = None
        if model is None:
            raise _unknown_model(name)
        if model.platform is None:
            markers = sorted({f for p in PLATFORMS.values() for f in p.marker_files})
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"load failed for model '{name}': no version folder of {model.base_path} "
                f"holds a model file ({', '.join(markers)})",
            )
        was_configured = self._live.current.get(name) is not None
        errors = await self._live.change({name: model.config()}, LOAD_ORIGIN)
        available = [s.version for s in self._statuses(name) or [] if s.state == State.AVAILABLE]
        if errors or not available:
            if not was_configured:
                await self._live.change({name: None}, f"{LOAD_ORIGIN} failed")
            if errors:
                detail = "; ".join(errors)
                log.warning("repository_load_failed", model=name, error=detail)
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"load failed for model '{name}': {detail}"
                )
            raise ServingError(Code.INTERNAL, f"failed to load '{name}', no version is available")
        log.info("repository_model_loaded", model=name, versions=available)

    async def unload(self, name: str) -> None:
        """Remove `name` from the config in force and wait until its versions ended. A
        model that is not loaded is not an error (as Triton)."""
        await self._live.change({name: None}, UNLOAD_ORIGIN)
        still = [
            str(s.version)
            for s in self._statuses(name) or []
            if s.state == State.AVAILABLE and self._live.current.get(name) is None
        ]
        if still:
            raise ServingError(
                Code.INTERNAL,
                f"failed to unload '{name}', versions that are still available: {','.join(still)}",
            )
        log.info("repository_model_unloaded", model=name)
