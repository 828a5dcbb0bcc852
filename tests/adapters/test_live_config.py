"""The running config: sources follow each applied config, a bad file edit changes nothing,
and a reload answers once its models are available or failed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pyserving.adapters.live_config import LiveConfig
from pyserving.adapters.model_config import (
    PARSE_ERROR_PREFIX,
    ServerConfig,
    parse_model_server_config,
)
from pyserving.engine.events import ConfigReloaded
from tests.servables import GatedLoader
from tests.util.lifecycle import Lifecycle
from tests.util.sources import make_versions


def config_text(root: Path, **models: str) -> str:
    """models: name → the body after base_path (policy, labels)."""
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{root / name}" {body} }}\n'
        for name, body in models.items()
    )
    return f"model_config_list {{\n{entries}}}\n"


class Harness(Lifecycle):
    """The shared lifecycle plus the live config, reading its own config file."""

    def __init__(
        self,
        root: Path,
        text: str,
        loader: GatedLoader | None = None,
        config_poll_wait_s: float = 0.0,
    ) -> None:
        super().__init__(loader or GatedLoader())
        self.root = root
        self.file = root / "models.config"
        self.file.write_text(text)
        self.live = LiveConfig(
            parse_model_server_config(text, str(self.file)),
            self.bus.publish,
            self.manager,
            self.bus.wait_idle,
            source_poll_wait_s=0,  # sources look once per apply: the test drives the file
            config_file=str(self.file),
            config_poll_wait_s=config_poll_wait_s,
        )
        self.live.start()
        self.settle()

    def edit(self, text: str) -> bool:
        self.file.write_text(text)
        applied = self.live.check_file()
        self.settle()
        return applied

    def close(self) -> None:
        self.live.stop()
        super().close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a", "b", "c"):
        make_versions(tmp_path / name, "1", "2", "3")
    return tmp_path


def test_each_policy_gets_its_aspired_set(root: Path) -> None:
    h = Harness(
        root,
        config_text(
            root,
            a="model_version_policy { latest { num_versions: 2 } }",
            b="model_version_policy { all {} }",
            c="model_version_policy { specific { versions: 1 versions: 3 } }",
        ),
    )
    assert h.serving() == {"a": [2, 3], "b": [1, 2, 3], "c": [1, 3]}
    h.close()


def test_file_edits_add_remove_and_change_models(root: Path) -> None:
    h = Harness(root, config_text(root, a="", b=""))
    assert h.serving() == {"a": [3], "b": [3]}
    assert h.edit(
        config_text(root, a="model_version_policy { all {} }", c='version_labels { key: "s" '
                    "value: 1 } model_version_policy { specific { versions: 1 } }")
    )  # fmt: skip
    assert h.serving() == {"a": [1, 2, 3], "c": [1]}
    assert h.map.resolve("c", label="s") == 1
    assert {s.state for s in h.manager.statuses("b") or []} == {"end"}
    reloads = [e for e in h.events if isinstance(e, ConfigReloaded)]
    assert [(r.added, r.removed) for r in reloads] == [(("a", "b"), ()), (("c",), ("b",))]
    assert h.live.model_names() == ["a", "c"]
    h.close()


def test_bad_edit_keeps_the_last_good_config(root: Path) -> None:
    good = config_text(root, a='version_labels { key: "stable" value: 3 }')
    h = Harness(root, good)
    with capture_logs() as logs:
        assert not h.edit(good.replace("base_path", "base_pth"))  # syntax error
        assert not h.edit(config_text(root, a='model_platform: "onnx"'))  # unknown platform
        assert not h.edit(config_text(root, a="", b="").replace('"b"', '"a"'))  # same name
        assert not h.live.check_file()  # the same bad text again: nothing, logged once
    rejected = [line["error"] for line in logs if line["event"] == "model_config_rejected"]
    assert len(rejected) == 3
    assert (
        rejected[0].startswith(f"{PARSE_ERROR_PREFIX}{h.file}:2:")
        and 'no field named "base_pth"' in rejected[0]
    )
    assert "unknown model_platform 'onnx'" in rejected[1]
    assert "is used twice" in rejected[2]
    assert h.serving() == {"a": [3]} and h.map.resolve("a", label="stable") == 3
    assert h.live.current.names == ["a"]
    assert h.edit(config_text(root, a='version_labels { key: "stable" value: 2 } '
                              "model_version_policy { all {} }"))  # fmt: skip
    assert h.map.resolve("a", label="stable") == 2
    h.close()


def test_reload_answers_when_models_are_available_or_failed(root: Path) -> None:
    loader = GatedLoader(failing=[str(root / "b" / "3")])
    h = Harness(root, config_text(root, a=""), loader)
    new = parse_model_server_config(config_text(root, a="", b=""))
    errors = asyncio.run(h.live.reload(new, "test"))
    assert len(errors) == 1 and errors[0].startswith("model b version 3: OSError: cannot read")
    assert h.serving() == {"a": [3]}
    errors = asyncio.run(h.live.reload(ServerConfig(()), "test"))
    assert errors == [] and h.serving() == {}
    h.close()


def test_an_edit_not_yet_polled_does_not_undo_a_later_reload(root: Path) -> None:
    """The race behind a flaky e2e test: the file is edited, a ReloadConfig RPC applies
    another config before the poller reads the edit; the poll must not undo the RPC."""
    h = Harness(root, config_text(root, a=""))
    h.file.write_text(config_text(root, a="", b=""))  # written, not yet polled
    errors = asyncio.run(h.live.reload(parse_model_server_config(config_text(root, c="")), "rpc"))
    assert errors == [] and h.serving() == {"c": [3]}
    assert not h.live.check_file()  # the edit predates the RPC: the RPC's config stays
    h.settle()
    assert h.live.current.names == ["c"] and h.serving() == {"c": [3]}
    assert h.edit(config_text(root, b=""))  # an edit after the RPC replaces its config
    assert h.serving() == {"b": [3]}
    h.close()
