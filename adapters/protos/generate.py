"""`make protos`: regenerate the `_pb2.py`, `.pyi` and `_pb2_grpc.py` modules in this folder.

Each `.proto` here is compiled as `pyserving/adapters/protos/NAME.proto`, the path of its
module, so its file name in protobuf's default descriptor pool cannot collide with
TF Serving's own files (`tensorflow_serving/...`) should a later wheel ship them.

The Open Inference Protocol's files (`PUBLISHED`: Triton's grpc_service.proto and
model_config.proto, copied unchanged from triton-inference-server/common) are the exception:
they keep their published names, so the default pool holds one copy of `inference.*` when a
process also imports tritonclient (whose generated modules register the same files; the pool
accepts a file registered twice only if both copies are identical). Their generated
`import model_config_pb2` lines are rewritten to this package, as tritonclient does for its own.
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
PACKAGE_PATH = Path("pyserving/adapters/protos")
SERVICES = ("model_registry.proto", "grpc_service.proto")  # the files that define a service
PUBLISHED = ("grpc_service.proto", "model_config.proto")  # compiled under their own names
PACKAGE = PACKAGE_PATH.as_posix().replace("/", ".")


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
            shutil.copyfile(proto, _compiled_path(src, proto.name))
        names = [_compiled_name(p.name) for p in proto_files()]
        services = [_compiled_name(name) for name in SERVICES]
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
        outputs = [p for p in gen.rglob("*") if p.is_file()]
        for path in sorted(outputs, key=lambda p: p.name):
            target = out_dir / path.name
            target.write_text(_package_imports(path.read_text()))
            written.append(target)
        return written


def _compiled_name(name: str) -> str:
    return name if name in PUBLISHED else (PACKAGE_PATH / name).as_posix()


def _compiled_path(root: Path, name: str) -> Path:
    return root / _compiled_name(name)


def _package_imports(text: str) -> str:
    """`import model_config_pb2 as x` (a published file's import) → this package's module."""
    for proto in PUBLISHED:
        module = proto.removesuffix(".proto") + "_pb2"
        text = text.replace(f"\nimport {module} as ", f"\nfrom {PACKAGE} import {module} as ")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyserving.adapters.protos.generate",
        description="Regenerate the protobuf modules from the .proto files next to this script.",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
