"""The `python` platform: a version folder holding `model.py`, served like a SavedModel.

For pre/post-processing, rules, lookups and models from other libraries: the code that
TF Serving users otherwise run in a sidecar. The version folder's `model.py` declares
its signatures and exposes plain functions:

    SIGNATURES = {
        "serving_default": {
            "inputs": {"x": ("float32", [None, 3])},     # alias: (numpy dtype, shape)
            "outputs": {"y": ("float32", [None])},       # None = any size
            "method_name": "tensorflow/serving/predict",  # optional (default: predict)
            "function": "predict",                        # optional (default: predict)
        },
    }

    def load(path: str) -> object: ...         # optional: state for the functions
    def predict(state, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def unload(state) -> None: ...              # optional

Requests are checked against the declared signatures before the function runs, exactly
as for TensorFlow; a `classify`/`regress` signature with a string input `inputs`
receives serialized tf.Examples. Functions are called from several request threads at
once. `model.py` is imported as a single file: relative imports are not supported.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec
from pyserving.engine.signature_checks import check_tensors

MODULE_FILE = "model.py"
PREDICT_METHOD = "tensorflow/serving/predict"

_module_ids = itertools.count(1)


class PythonModelError(Exception):
    """`model.py` is missing, fails to import, or declares its signatures wrongly."""


def _spec(path: str, alias: str, declared: Any) -> TensorSpec:
    try:
        dtype_text, shape = declared
        dtype = np.dtype(object) if dtype_text in ("string", "bytes") else np.dtype(dtype_text)
        dims = None if shape is None else tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise PythonModelError(
            f"{path}: tensor {alias!r} must be declared as (dtype, shape), e.g. "
            f"('float32', [None, 3]); got {declared!r} ({exc})"
        ) from None
    return TensorSpec(alias=alias, dtype=dtype, shape=dims)


def _signatures(path: str, module: ModuleType) -> dict[str, tuple[Signature, Callable[..., Any]]]:
    declared = getattr(module, "SIGNATURES", None)
    if not isinstance(declared, Mapping) or not declared:
        raise PythonModelError(
            f"{path} declares no SIGNATURES: add a dict such as {{'serving_default': "
            "{'inputs': {'x': ('float32', [None])}, 'outputs': {'y': ('float32', [None])}}}"
        )
    found: dict[str, tuple[Signature, Callable[..., Any]]] = {}
    for name, entry in declared.items():
        function_name = entry.get("function", "predict")
        function = getattr(module, function_name, None)
        if not callable(function):
            raise PythonModelError(
                f"{path}: signature {name!r} calls {function_name}(), which the module lacks"
            )
        signature = Signature(
            name=str(name),
            method_name=str(entry.get("method_name", PREDICT_METHOD)),
            inputs={a: _spec(path, a, d) for a, d in sorted(entry.get("inputs", {}).items())},
            outputs={a: _spec(path, a, d) for a, d in sorted(entry.get("outputs", {}).items())},
        )
        found[str(name)] = (signature, function)
    return found


def _import(path: str) -> tuple[ModuleType, str]:
    file = os.path.join(path, MODULE_FILE)
    if not os.path.isfile(file):
        raise PythonModelError(f"no {MODULE_FILE} in {path}")
    # A unique name per load: two versions of one model never share a module object.
    name = f"pyserving_python_model_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PythonModelError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    return module, name


def _as_declared(array: Any, spec: TensorSpec, where: str) -> np.ndarray:
    value = np.asarray(array)
    if spec.dtype == np.dtype(object):
        if value.dtype.kind not in "OSU":
            raise ServingError(Code.INTERNAL, f"{where} is {value.dtype}, declared string")
        return np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(
            value
        )
    if value.dtype != spec.dtype:
        if not np.can_cast(value.dtype, spec.dtype, casting="same_kind"):
            raise ServingError(
                Code.INTERNAL, f"{where} is {value.dtype}, declared {spec.dtype.name}"
            )
        value = value.astype(spec.dtype)
    return value


class PythonServable:
    def __init__(self, path: str) -> None:
        self._path = path
        self._module, self._module_name = _import(path)
        try:
            self._entries = _signatures(os.path.join(path, MODULE_FILE), self._module)
            load = getattr(self._module, "load", None)
            self._state = load(path) if callable(load) else None
        except Exception:
            sys.modules.pop(self._module_name, None)
            raise
        self._signatures = {name: sig for name, (sig, _) in self._entries.items()}

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        spec, function = self._entries[signature]
        check_tensors(spec, inputs)  # no graph to refuse a dtype or shape: the declaration does
        try:
            result = function(self._state, dict(inputs))
        except ServingError:
            raise
        except ValueError as exc:  # the model's way to say "this input is wrong"
            raise ServingError(Code.INVALID_ARGUMENT, str(exc).split("\n")[0]) from None
        except Exception as exc:
            raise ServingError(
                Code.UNKNOWN, f"{function.__name__}() raised {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(result, Mapping):
            raise ServingError(
                Code.INTERNAL, f"{function.__name__}() returned {type(result).__name__}, not dict"
            )
        names = list(output_filter) or list(spec.outputs)
        outputs = {}
        for name in names:
            if name not in result:
                raise ServingError(
                    Code.INTERNAL, f"{function.__name__}() returned no output {name!r}"
                )
            outputs[name] = _as_declared(
                result[name], spec.outputs[name], f"output {name!r} of {signature}"
            )
        return outputs

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in self._signatures.items():
            signature_def = out.signature_def[name]
            signature_def.method_name = signature.method_name
            for target, specs in (
                (signature_def.inputs, signature.inputs),
                (signature_def.outputs, signature.outputs),
            ):
                for alias, spec in specs.items():
                    target[alias].CopyFrom(_tensor_info(spec))
        return out

    def unload(self) -> None:
        unload = getattr(self._module, "unload", None)
        try:
            if callable(unload):
                unload(self._state)
        finally:
            self._state = None
            self._entries = {}
            sys.modules.pop(self._module_name, None)


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    dtype = tf.string if spec.dtype == np.dtype(object) else tf.as_dtype(spec.dtype)
    info = meta_graph_pb2.TensorInfo(name=spec.alias, dtype=dtype.as_datatype_enum)
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
    else:
        info.tensor_shape.dim.extend(
            tensor_shape_pb2.TensorShapeProto.Dim(size=-1 if d is None else d) for d in spec.shape
        )
    return info


class PythonLoader:
    platform = "python"

    def load(self, path: str) -> PythonServable:
        return PythonServable(path)
