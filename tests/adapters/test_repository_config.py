"""Which change wins when the repository API and the config file (or the reload RPC)
change the same model: the last one, per model. And the repository's load and unload
over the live config: a load that fails is taken out again and names the failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyserving.adapters.model_config import ModelConfig, parse_model_server_config
from pyserving.adapters.model_repository import ModelRepository, RepositoryControl
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.events import ConfigReloaded
from tests.adapters.test_live_config import Harness as FileHarness
from tests.adapters.test_live_config import config_text
from tests.servables import GatedLoader
from tests.util.sources import make_versions


class Harness(FileHarness):
    """The live config's harness on a file polled only when a test says (poll period an
    hour: the watcher never fires), with a repository at `root / repo`."""

    def __init__(self, root: Path, text: str, loader: GatedLoader | None = None) -> None:
        super().__init__(root, text, loader, config_poll_wait_s=3600)
        self.control = RepositoryControl(
            ModelRepository(str(root / "repo")), self.live, self.manager.statuses
        )

    def load(self, name: str) -> None:
        asyncio.run(self.control.load(name))

    def unload(self, name: str) -> None:
        asyncio.run(self.control.unload(name))

    def origins(self) -> list[str]:
        return [e.origin for e in self.events if isinstance(e, ConfigReloaded)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        make_versions(tmp_path / name, "1", "2")
    for name in ("r", "a"):
        make_versions(tmp_path / "repo" / name, "5")
    return tmp_path


@pytest.fixture
def harness(root: Path):
    h = Harness(root, config_text(root, a=""))
    yield h
    h.close()


def test_an_unchanged_or_unrelated_file_does_not_undo_a_repository_load(
    harness: Harness, root: Path
) -> None:
    harness.load("r")
    assert harness.serving() == {"a": [2], "r": [5]}
    assert not harness.live.check_file()  # the file did not change: r stays
    assert harness.edit(config_text(root, a="", b=""))  # an edit about b only
    assert harness.serving() == {"a": [2], "b": [2], "r": [5]}
    harness.unload("r")
    assert harness.serving() == {"a": [2], "b": [2]}
    assert harness.origins()[-1] == "RepositoryModelUnload"


def test_the_last_change_of_a_model_wins(harness: Harness, root: Path) -> None:
    harness.load("a")  # the repository's a (version 5) replaces the file's a
    assert harness.serving() == {"a": [5]}
    assert harness.edit(config_text(root, a="", b=""))  # b added; a unchanged in the file
    assert harness.serving() == {"a": [5], "b": [2]}
    assert harness.edit(config_text(root, a="model_version_policy { all {} }", b=""))
    assert harness.serving() == {"a": [1, 2], "b": [2]}  # the file changed a last: it wins
    harness.unload("b")  # a model of the file, removed through the repository API
    assert harness.serving() == {"a": [1, 2]}
    assert harness.edit(config_text(root, a="model_version_policy { all {} }", b="", c=""))
    assert "b" not in harness.serving()  # the edit did not touch b: still unloaded
    assert harness.edit(config_text(root, a="", b='version_labels { key: "x" value: 1 }'))
    assert harness.serving() == {"a": [2], "b": [2]}  # the edit changed b: back


def test_the_reload_rpc_states_the_whole_config_and_drops_repository_changes(
    harness: Harness, root: Path
) -> None:
    harness.load("r")
    harness.unload("a")
    assert harness.serving() == {"r": [5]}
    errors = asyncio.run(
        harness.live.reload(parse_model_server_config(config_text(root, a="", b="")), "rpc")
    )
    assert errors == [] and harness.serving() == {"a": [2], "b": [2]}


def test_a_file_edit_made_before_a_repository_change_is_applied_first(
    harness: Harness, root: Path
) -> None:
    harness.file.write_text(config_text(root, b=""))  # written, not yet polled
    harness.load("r")
    assert harness.serving() == {"b": [2], "r": [5]}  # the edit, then the load
    assert harness.origins()[-2:] == [str(harness.file), "RepositoryModelLoad"]
    assert not harness.live.check_file()


def test_a_failed_load_is_taken_out_again_and_named(root: Path) -> None:
    h = Harness(root, config_text(root, a=""), GatedLoader(failing=[str(root / "repo/r/5")]))
    with pytest.raises(ServingError) as failed:
        h.load("r")
    assert failed.value.code == Code.INVALID_ARGUMENT
    assert failed.value.message.startswith("load failed for model 'r': model r version 5: ")
    assert h.live.current.names == ["a"] and h.serving() == {"a": [2]}
    (entry,) = h.control.index()[1:]
    assert (entry.name, entry.version, entry.state) == ("r", "5", "UNAVAILABLE")
    assert "cannot read" in entry.reason
    with pytest.raises(ServingError) as unknown:
        h.load("nosuch")
    assert unknown.value.code == Code.INTERNAL
    assert unknown.value.message == "failed to load 'nosuch', failed to poll from model repository"
    h.close()


def test_load_all_adds_every_model_folder_in_one_change(harness: Harness) -> None:
    assert harness.control.load_all() == ["a", "r"]
    harness.settle()
    assert harness.serving() == {"a": [5], "r": [5]}
    assert harness.origins()[-1] == "--model_repository_load_all"
    assert isinstance(harness.live.current.get("r"), ModelConfig)
