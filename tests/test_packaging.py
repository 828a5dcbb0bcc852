"""Every code folder must be in the wheel, mapped under the one import package `pyserving`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
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


def test_the_wheel_holds_every_module_under_its_package(tmp_path: Path) -> None:
    """Build the wheel (from a copy of the tree) and look inside: every module of every code
    folder, and the protos' .proto and .pyi files, under the name pyserving maps it to."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for top in CODE_FOLDERS:
        shutil.copytree(ROOT / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("pyserving-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = set()
    for package, folder in config["package-dir"].items():
        prefix = package.replace(".", "/")
        for path in (ROOT / folder).iterdir():
            if path.suffix == ".py" or (folder == "protos" and path.suffix in (".proto", ".pyi")):
                expected.add(f"{prefix}/{path.name}")
    assert expected - shipped == set()
    assert "pyserving/protos/model_registry_pb2_grpc.py" in shipped
