"""Options and models every test folder may use (pytest takes options only from top conftests)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import pyserving  # noqa: F401 - first: it sets TensorFlow's environment before TF is imported
from tests.util.processes import run_python
from tests.util.sources import stage_version

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run tests/reliability at full size (as PYSERVING_LONG=1 does); default: CI size",
    )


BIG_MODEL_MIB = 256  # one leaked version of it breaks every memory bound in the suite


@dataclass(frozen=True)
class BigModel:
    """An export of `export_big_variable_model` as versions 1 and 2 (hard links of one)."""

    export_dir: Path
    mib: int

    def copy_version(self, version: int, into: Path) -> Path:
        """Link a version into a watched folder atomically (staged, then renamed)."""
        return stage_version(self.export_dir, version, into, copy=os.link)


@pytest.fixture(scope="session")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> BigModel:
    """Exported once per session, in a subprocess: the test process never holds it."""
    export_dir = tmp_path_factory.mktemp("big_model")
    code = (
        "import sys; from pathlib import Path; "
        "from tests.example_models import export_big_variable_model as export; "
        "export(Path(sys.argv[1]), int(sys.argv[2]))"
    )
    result = run_python("-c", code, str(export_dir / "1"), str(BIG_MODEL_MIB))
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.copytree(export_dir / "1", export_dir / "2", copy_function=os.link)
    return BigModel(export_dir, BIG_MODEL_MIB)


@pytest.fixture(scope="session")
def workers() -> int:
    """In-process unless a test says otherwise (`tests.util.workers.both_modes`)."""
    return 0
