"""The repository folder scan (what is a model, which platform) and its index rows."""

from __future__ import annotations

from pathlib import Path

from pyserving.adapters.model_repository import (
    IndexEntry,
    ModelRepository,
    RepositoryModel,
    index_entries,
)
from pyserving.engine.manager import VersionStatus
from pyserving.statemachines.servable_version import State


def touch(path: Path, content: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_scan_finds_model_folders_and_their_platforms(tmp_path: Path) -> None:
    touch(tmp_path / "saved" / "1" / "saved_model.pb")
    touch(tmp_path / "text" / "3" / "saved_model.pbtxt")
    touch(tmp_path / "lite" / "2" / "model.tflite")
    touch(tmp_path / "py" / "7" / "model.py")
    touch(tmp_path / "py" / "7" / "config.json")
    # the newest version holding a model file names the platform; an empty newer one not
    touch(tmp_path / "mixed" / "1" / "saved_model.pb")
    touch(tmp_path / "mixed" / "2" / "model.py")
    (tmp_path / "mixed" / "3").mkdir()
    touch(tmp_path / "nofile" / "1" / "weights.bin")
    models = {m.name: m for m in ModelRepository(str(tmp_path)).scan()}
    assert {name: m.platform for name, m in models.items()} == {
        "lite": "tensorflow",  # TFLite is served by the tensorflow platform's loader
        "mixed": "python",
        "nofile": None,
        "py": "python",
        "saved": "tensorflow",
        "text": "tensorflow",
    }
    assert models["mixed"].versions == (1, 2, 3)
    assert models["saved"].base_path == str(tmp_path / "saved")
    config = models["py"].config()
    assert (config.name, config.platform, config.base_path) == (
        "py",
        "python",
        str(tmp_path / "py"),
    )


def test_folders_that_are_not_models_are_ignored(tmp_path: Path) -> None:
    touch(tmp_path / "model" / "1" / "saved_model.pb")
    touch(tmp_path / "README.md")  # a file
    touch(tmp_path / ".staging-x" / "1" / "saved_model.pb")  # hidden: being copied in
    touch(tmp_path / "docs" / "latest" / "saved_model.pb")  # no numbered version folder
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "versionfile" / "1")  # "1" is a file, not a folder
    repository = ModelRepository(str(tmp_path))
    assert [m.name for m in repository.scan()] == ["model"]
    assert repository.find("model") is not None
    assert repository.find("docs") is None
    assert repository.find("../" + tmp_path.name + "/model") is None


def test_index_rows_use_tritons_states_and_reasons() -> None:
    models = [
        RepositoryModel("a", "/r/a", (1, 2, 3, 4), "tensorflow"),
        RepositoryModel("never", "/r/never", (1,), "python"),
    ]
    statuses = {
        "a": [
            VersionStatus("a", 1, State.END, ""),
            VersionStatus("a", 2, State.ERROR, "OSError: broken"),
            VersionStatus("a", 3, State.AVAILABLE, ""),
            VersionStatus("a", 4, State.LOADING, ""),
            VersionStatus("a", 5, State.UNLOADING, ""),
        ]
    }
    rows = index_entries(models, statuses.get)
    assert rows == [
        IndexEntry("a", "1", "UNAVAILABLE", "unloaded"),
        IndexEntry("a", "2", "UNAVAILABLE", "OSError: broken"),
        IndexEntry("a", "3", "READY", ""),
        IndexEntry("a", "4", "LOADING", ""),
        IndexEntry("a", "5", "UNLOADING", ""),
        IndexEntry("never"),
    ]
    assert index_entries(models, statuses.get, ready_only=True) == [
        IndexEntry("a", "3", "READY", "")
    ]
