"""`make protos`: regenerate the `_pb2.py`, `.pyi` and `_pb2_grpc.py` modules in this folder.

Each `.proto` here is compiled as `pyserving/protos/NAME.proto`, the path of its
module, so its file name in protobuf's default descriptor pool cannot collide with
TF Serving's own files (`tensorflow_serving/...`) should a later wheel ship them.
Needs grpcio-tools (the `test` extra pins the version whose output is checked in).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_PATH = Path("pyserving/protos")
SERVICES = ("model_registry.proto",)  # the files that define a gRPC service


def proto_files() -> list[Path]:
    return sorted(HERE.glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every `.proto` here into out_dir; returns the files written."""
    import grpc_tools

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        src, gen = Path(tmp, "src"), Path(tmp, "gen")
        (src / PACKAGE_PATH).mkdir(parents=True)
        gen.mkdir()
        for proto in proto_files():
            shutil.copyfile(proto, src / PACKAGE_PATH / proto.name)
        names = [(PACKAGE_PATH / p.name).as_posix() for p in proto_files()]
        services = [(PACKAGE_PATH / name).as_posix() for name in SERVICES]
        # A child process: protoc's compiler crashes in a process that has loaded TensorFlow.
        base = [sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"-I{include}"]
        runs = (
            [*base, f"--python_out={gen}", f"--pyi_out={gen}", *names],
            [*base, f"--grpc_python_out={gen}", *services],
        )
        for args in runs:
            subprocess.run(args, check=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in sorted((gen / PACKAGE_PATH).iterdir()):
            target = out_dir / path.name
            shutil.copyfile(path, target)
            written.append(target)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyserving.protos.generate",
        description="Regenerate the protobuf modules from the .proto files next to this script.",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
