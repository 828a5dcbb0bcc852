"""Every code folder must be in the wheel, mapped under the one import package `pyserving`."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("engine", "statemachines", "adapters", "api", "protos", "pyserving")


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {folder: package for package, folder in config["package-dir"].items()}
    found = set()
    for top in CODE_FOLDERS:
        for init in (ROOT / top).rglob("__init__.py"):
            folder = init.parent.relative_to(ROOT).as_posix()
            assert folder in mapped, f"{folder} has an __init__.py but no package-dir entry"
            found.add(mapped[folder])
    assert found == set(config["packages"])
    assert all(p == "pyserving" or p.startswith("pyserving.") for p in config["packages"])


def test_import_names() -> None:
    import pyserving.adapters.sources.file_system
    import pyserving.engine.manager
    import pyserving.statemachines.servable_version  # noqa: F401
