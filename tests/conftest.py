"""Options every test folder may read (pytest takes new options only from top conftests)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run tests/reliability at full size (as PYSERVING_LONG=1 does); default: CI size",
    )
