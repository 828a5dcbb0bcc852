#!/usr/bin/env python3
"""Run mypy on the `pyserving` package as it is imported: `make lint` calls this.

Why a shim: pyproject's package-dir maps the top-level folders engine/, statemachines/,
adapters/ and api/ into `pyserving.*`. The editable install reaches them through an import
hook, which mypy does not run, and mypy_path/explicit_package_bases can only name folders
after their own path (`engine.manager`, never `pyserving.engine.manager`). So this builds
build/typecheck/pyserving/ out of symlinks, one per package-dir entry (read from
pyproject.toml, so new subpackages need no edit here), runs `mypy -p pyserving` with it on
MYPYPATH, and prints the errors under the real file paths. Extra arguments go to mypy.
"""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def package_dirs() -> dict[str, str]:
    """pyproject's package-dir: dotted package name -> folder relative to the repository."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]["package-dir"]


def build_tree(package_dir: dict[str, str]) -> None:
    """A real folder per package, holding symlinks to its folder's modules (never a link to a
    whole folder: pyserving/ is itself a package folder, and its subpackages live elsewhere)."""
    shutil.rmtree(TREE, ignore_errors=True)  # afresh: packages and modules move
    for name, folder in package_dir.items():
        package = TREE.joinpath(*name.split("."))
        package.mkdir(parents=True, exist_ok=True)
        for source in sorted((ROOT / folder).glob("*.py*")):
            os.symlink(os.path.relpath(source, package), package / source.name)


def main() -> int:
    package_dir = package_dirs()
    build_tree(package_dir)
    env = dict(os.environ, MYPYPATH=str(TREE))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "pyserving", *sys.argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    # build/typecheck/pyserving/engine/x.py:3: error ... -> engine/x.py:3: error ...
    mapping = {
        f"build/typecheck/{name.replace('.', '/')}/": folder.rstrip("/") + "/"
        for name, folder in package_dir.items()
    }
    # Longest first, so pyserving/adapters/sources/ wins over pyserving/adapters/.
    pattern = re.compile("|".join(re.escape(p) for p in sorted(mapping, key=len, reverse=True)))
    for stream, out in ((result.stdout, sys.stdout), (result.stderr, sys.stderr)):
        out.write(pattern.sub(lambda m: mapping[m.group(0)], stream))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
