"""TF Serving's message modules without TensorFlow's runtime, for front-end processes.

`from tensorflow_serving.apis import predict_pb2` imports `tensorflow.core.framework.tensor_pb2`,
and Python runs a package's parents first: `tensorflow/__init__.py` loads all of TensorFlow
(5.6 s and 630 MiB RSS on the bench machine). A front-end only needs the generated `_pb2`
modules, and those import nothing but protobuf, grpc, other `_pb2` modules and the empty
`__init__.py` files of `tensorflow/core/...`, `tensorflow/compiler/...` and `tensorflow_serving/`.

`import_api_protos()` imports them from the installed wheels, the very files clients use (same
descriptors, same full names, so grpc stubs and wire bytes are identical), while a stand-in
`tensorflow` package module whose `__path__` is the real folder sits in `sys.modules`. The
stand-in is removed before the function returns. What stays behind is what a normal import
leaves: `tensorflow.core...`, `tensorflow.compiler...` and `tensorflow_serving...` modules,
and no `tensorflow` module. So TensorFlow, imported later in the same process, runs its own
`__init__.py` as usual and finds its message modules already loaded (Python imports a module's
parents only up to the first one already in `sys.modules`), and later imports of other
`tensorflow.core.*` message modules need no stand-in either.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import time
import types
from dataclasses import dataclass

# Every module of these packages is imported: the APIs' messages and services, and the
# configs (ModelServerConfig for the reload RPC). Their closure brings in the
# tensorflow.core messages they use (TensorProto, Example, MetaGraphDef, ...).
PACKAGES = ("tensorflow_serving.apis", "tensorflow_serving.config")
# Imported if TensorFlow's runtime ever loads under the stand-in: a sign that the wheel's
# message modules changed what they import, so this way no longer holds.
RUNTIME = "tensorflow.python"


@dataclass(frozen=True)
class ProtoImport:
    """What `import_api_protos` did: `stand_in` is False where TensorFlow was already loaded
    (or the modules were), so the ordinary import ran."""

    stand_in: bool
    modules: tuple[str, ...]
    seconds: float


class _StandIn(types.ModuleType):
    """`tensorflow` while the message modules import: a package with the real `__path__` and
    nothing else. Code that reaches for TensorFlow itself meanwhile gets a clear error rather
    than a half-initialised module."""

    def __getattr__(self, name: str) -> object:
        raise ImportError(
            f"tensorflow.{name}: TensorFlow's runtime is not loaded here; "
            "pyserving.adapters.tf_protos stands in for the `tensorflow` package only while "
            "it imports TF Serving's message modules (import tensorflow after it returns)"
        )


def _package_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)]
    return names


def import_api_protos() -> ProtoImport:
    """Import TF Serving's message and service modules without TensorFlow's runtime.

    Call it at a process's start, before other threads import anything from `tensorflow`.
    Safe to call again, and in a process that has TensorFlow or later imports it.
    """
    started = time.perf_counter()
    if "tensorflow" in sys.modules or f"{PACKAGES[0]}.predict_pb2" in sys.modules:
        names = _package_modules()
        for name in names:
            importlib.import_module(name)
        return ProtoImport(False, tuple(names), time.perf_counter() - started)
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the tensorflow package is not installed: its message modules live there")
    stand_in = _StandIn("tensorflow", "stand-in for TensorFlow's package while protos import")
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__package__ = "tensorflow"
    sys.modules["tensorflow"] = stand_in
    try:
        names = _package_modules()
        for name in names:
            importlib.import_module(name)
    finally:
        if sys.modules.get("tensorflow") is stand_in:
            del sys.modules["tensorflow"]
    if RUNTIME in sys.modules:
        raise ImportError(
            f"importing TF Serving's message modules loaded {RUNTIME}: this TensorFlow wheel's "
            "_pb2 modules import its runtime, so front-ends cannot skip it"
        )
    return ProtoImport(True, tuple(names), time.perf_counter() - started)
