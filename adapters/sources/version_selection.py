"""Version selections: which of the versions found in a base path to serve.

TF Serving's `model_version_policy` choices (latest N, all, specific), called selections
here so that "policy" means one thing, the manager's aspired-version policy
(engine/policy.py). Small value objects the storage path source applies on every poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class VersionSelection(Protocol):
    def select(self, versions: Sequence[int]) -> list[int]: ...


@dataclass(frozen=True)
class LatestVersions:
    """Serve the N highest versions (TF Serving's default, N=1)."""

    num_versions: int = 1

    def select(self, versions: Sequence[int]) -> list[int]:
        return sorted(versions, reverse=True)[: self.num_versions]


LATEST_ONE = LatestVersions(1)


@dataclass(frozen=True)
class AllVersions:
    """Serve every version found."""

    def select(self, versions: Sequence[int]) -> list[int]:
        return sorted(versions)


@dataclass(frozen=True)
class SpecificVersions:
    """Serve exactly the listed versions that exist; the others are ignored until they do."""

    versions: tuple[int, ...]

    def select(self, versions: Sequence[int]) -> list[int]:
        wanted = set(self.versions)
        return sorted(v for v in versions if v in wanted)
