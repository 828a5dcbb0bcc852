"""Optional packages and tools a test needs: skipped on a laptop, a failure in CI.

A skip in CI hides a broken image (a missing s3fs once skipped every object-store test
without anyone noticing), so where `CI` is set (CI=true, CI=1: what GitHub Actions and
.ci/run set) a missing requirement fails the test instead. Every such check in tests/
goes through here.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True where the `CI` environment variable is set to anything but empty/0/false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(message: str) -> NoReturn:
    """Fail in CI, skip elsewhere (a module-level call skips the whole module)."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing requirement fails, never skips)")
    pytest.skip(message, allow_module_level=True)


def require_module(name: str, hint: str) -> ModuleType:
    """The imported module `name`; missing, `missing(hint)` (say, which extra installs it)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} not importable ({exc}): {hint}")


def require_binary(name: str, hint: str) -> str:
    """The path of the executable `name`; missing, `missing(hint)`."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not installed: {hint}")
    return path


def optional_binary(name: str, hint: str) -> str | None:
    """`name`'s path, or None outside CI where the test has a fallback; fails in CI."""
    path = shutil.which(name)
    if path is None and in_ci():
        missing(f"{name} not installed: {hint}")
    return path
