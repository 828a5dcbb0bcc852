"""The file-system source: which folders are versions, and what it publishes when."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from pyserving.adapters.sources.storage_path import (
    LatestVersions,
    StoragePathSource,
    list_versions,
    parse_version,
)
from tests.util.sources import Recorder, make_versions


@pytest.mark.parametrize(
    ("name", "expected"),
    [("1", 1), ("00000123", 123), ("0", 0), ("42", 42)],
)
def test_numeric_names_are_versions(name: str, expected: int) -> None:
    assert parse_version(name) == expected


@pytest.mark.parametrize("name", ["", "v1", "1.0", "-1", "+1", " 1", "1a", "tmp", "١٢", ".tmp-3"])
def test_other_names_are_not_versions(name: str) -> None:
    assert parse_version(name) is None


def test_list_versions_skips_files_and_other_names(tmp_path: Path) -> None:
    make_versions(tmp_path, "1", "0002", "tmp", ".tmp-3-99", "assets")
    (tmp_path / "7").write_text("a file, not a version folder")
    assert list_versions(str(tmp_path)) == {1: str(tmp_path / "1"), 2: str(tmp_path / "0002")}


def test_latest_versions_policy() -> None:
    assert LatestVersions(1).select([3, 10, 2]) == [10]
    assert LatestVersions(2).select([3, 10, 2]) == [10, 3]
    assert LatestVersions(5).select([3]) == [3]


def test_publishes_only_changes(tmp_path: Path) -> None:
    make_versions(tmp_path, "1")
    published = Recorder()
    source = StoragePathSource("mnist", str(tmp_path), published)
    assert source.poll_once() is not None
    assert source.poll_once() is None  # nothing changed: nothing published
    make_versions(tmp_path, "2")
    event = source.poll_once()
    assert event is not None and event.versions[0].path == str(tmp_path / "2")
    assert published.versions() == [[1], [2]]


def test_deleted_version_folder_is_unaspired(tmp_path: Path) -> None:
    make_versions(tmp_path, "1", "2")
    published = Recorder()
    source = StoragePathSource("mnist", str(tmp_path), published, LatestVersions(2))
    source.poll_once()
    shutil.rmtree(tmp_path / "2")
    source.poll_once()
    shutil.rmtree(tmp_path / "1")
    source.poll_once()
    assert published.versions() == [[1, 2], [1], []]


def test_missing_base_path_keeps_the_last_state(tmp_path: Path) -> None:
    base = tmp_path / "model"
    make_versions(base, "1")
    published = Recorder()
    source = StoragePathSource("mnist", str(base), published)
    source.poll_once()
    shutil.rmtree(base)
    assert source.poll_once() is None
    assert source.poll_once() is None
    make_versions(base, "1")  # the mount comes back unchanged: still nothing to say
    assert source.poll_once() is None
    assert published.versions() == [[1]]


def test_missing_base_path_at_start_publishes_nothing(tmp_path: Path) -> None:
    published = Recorder()
    source = StoragePathSource("mnist", str(tmp_path / "nope"), published)
    assert source.poll_once() is None
    assert published.events == []


def test_folder_without_a_saved_model_is_not_aspired(tmp_path: Path) -> None:
    (tmp_path / "1" / "variables").mkdir(parents=True)
    published = Recorder()
    source = StoragePathSource("mnist", str(tmp_path), published)
    source.poll_once()
    assert published.versions() == [[]]
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"model")
    os.utime(tmp_path / "1" / "saved_model.pb", (time.time() - 60, time.time() - 60))
    source.poll_once()
    assert published.versions() == [[], [1]]


def test_folder_being_copied_waits_until_it_is_quiet(tmp_path: Path) -> None:
    make_versions(tmp_path, "1")
    published = Recorder()
    source = StoragePathSource("mnist", str(tmp_path), published, poll_wait_s=30)
    source.poll_once()
    make_versions(tmp_path, "2", quiet=False)  # just written: maybe still being copied
    assert source.poll_once() is None
    (tmp_path / "2" / "variables.data").write_bytes(b"more")  # the copy goes on
    assert source.poll_once() is None
    assert source.poll_once() is not None  # unchanged since the last look: complete
    assert published.versions() == [[1], [2]]


def test_single_poll_takes_what_is_there(tmp_path: Path) -> None:
    make_versions(tmp_path, "1", quiet=False)
    published = Recorder()
    StoragePathSource("mnist", str(tmp_path), published, poll_wait_s=0).poll_once()
    assert published.versions() == [[1]]


def test_listing_failures_back_off_and_recover(tmp_path: Path) -> None:
    published = Recorder()
    source = StoragePathSource("mnist", str(tmp_path / "gone"), published, poll_wait_s=1.0)
    waits = []
    for _ in range(8):
        source.poll_once()
        waits.append(source.next_wait_s())
    assert waits[:3] == [2.0, 4.0, 8.0] and max(waits) == 60.0
    make_versions(tmp_path / "gone", "1")
    source.poll_once()
    assert source.next_wait_s() == 1.0 and published.versions() == [[1]]
