"""TensorFlow Lite versions of the `tensorflow` platform, as TF Serving's TfLiteSession.

TF Serving decides inside its SavedModel bundle factory: with --prefer_tflite_model and
a `model.tflite` in the version folder it builds a TfLiteSession over that file (a pool
of single-threaded interpreters), otherwise it loads the SavedModel. The version stays a
`tensorflow` servable either way, so the lifecycle, metrics and APIs do not change.

The runtime is the installed TensorFlow's `tf.lite.Interpreter` (TF 2.21 still ships it;
it warns that it is deprecated in favour of `ai_edge_litert`, a package not installed here).
"""

from __future__ import annotations

import math
import os
import queue
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from pyserving.adapters.loaders.platforms import TFLITE_MODEL_FILE  # kTfLiteModelFilename
from pyserving.adapters.loaders.tensorflow_loader import describe
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Loader, Servable, Signature, TensorSpec
from pyserving.engine.signature_checks import check_dtypes

DEFAULT_SIGNATURE = "serving_default"  # kDefaultServingSignatureDefKey
SIGNATURE_DEFS_METADATA = "signature_defs_metadata"  # TF Lite's kSignatureDefsMetadataName
PREDICT_METHOD = "tensorflow/serving/predict"  # kPredictMethodName
INITIAL_BATCH_SIZE = 500  # tflite_interpreter_pool.h kInitialBatchSize


@dataclass(frozen=True)
class TFLiteOptions:
    """TF Serving's TFLite flags (SessionBundleConfig's prefer_tflite_model and pools)."""

    prefer: bool = False  # --prefer_tflite_model: model.tflite when present, else SavedModel
    always: bool = False  # --use_tflite_model (older releases): model.tflite, never SavedModel
    num_pools: int = 1  # --num_tflite_pools: interpreters per version (TF Serving: max(1, n))
    interpreters_per_pool: int = 1  # --num_tflite_interpreters_per_pool: >1 splits batches

    def serves_tflite(self, path: str) -> bool:
        return self.always or (self.prefer and (Path(path) / TFLITE_MODEL_FILE).is_file())


def _numpy_dtype(dtype: Any) -> np.dtype:
    """The engine's dtype for a TFLite tensor: strings are object arrays, as elsewhere."""
    dtype = np.dtype(dtype)
    return np.dtype(object) if dtype.kind in "SO" else dtype


def _tf_dtype(dtype: Any) -> int:
    dtype = np.dtype(dtype)
    return (tf.string if dtype.kind in "SO" else tf.as_dtype(dtype)).as_datatype_enum


def _tensor_info(details: Mapping[str, Any], shape_key: str) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=details["name"], dtype=_tf_dtype(details["dtype"]))
    for size in details[shape_key]:
        info.tensor_shape.dim.add().size = int(size)
    return info


def _spec(alias: str, details: Mapping[str, Any]) -> TensorSpec:
    shape = tuple(None if d < 0 else int(d) for d in details["shape_signature"])
    return TensorSpec(alias, _numpy_dtype(details["dtype"]), shape, details["name"])


def legacy_name(tensor_name: str) -> str:
    """TfToTfLiteLegacyTensorName: the name without its ':0' suffix."""
    return tensor_name.split(":", 1)[0]


def metadata_signature_defs(model: bytes) -> dict[str, meta_graph_pb2.SignatureDef]:
    """TF Lite's GetSignatureDefMap: the TensorFlow SignatureDefs a model carries in its
    `signature_defs_metadata` buffer (a flexbuffer map, key → serialized SignatureDef), as
    `signature_def_utils.set_signature_defs` writes them. None there: an empty map."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        metadata = root.Metadata(i)
        if metadata.Name() != SIGNATURE_DEFS_METADATA.encode():
            continue
        data = root.Buffers(metadata.Buffer()).DataAsNumpy()
        entries = flexbuffers.GetRoot(bytes(data)).AsMap
        try:
            return {
                key.AsKey: meta_graph_pb2.SignatureDef.FromString(value.AsStringBytes)
                for key, value in zip(entries.Keys, entries.Values, strict=True)
            }
        except Exception as exc:  # DecodeError, or a flexbuffer of another shape
            raise ValueError(f"Invalid SignatureDefs found in TfLite model: {exc}") from None
    return {}


def _fix_tensor_name(names: Mapping[str, int], name: str, alias: str, kind: str) -> str:
    """FixTfLiteTensorName: the signature's tensor name, or its legacy form without ':0'."""
    for candidate in (name, legacy_name(name)):
        if candidate in names:
            return candidate
    raise ValueError(
        f"Signature {kind} {alias} references an unknown tensor: Unknown tensor '{name}'."
    )


def new_interpreter(model: bytes) -> tf.lite.Interpreter:
    """One interpreter, single-threaded as TF Serving's pool makes them."""
    with warnings.catch_warnings():  # the deprecation notice, once per interpreter otherwise
        warnings.simplefilter("ignore", UserWarning)
        return tf.lite.Interpreter(model_content=model, num_threads=1)


class _Slot:
    """One interpreter of the pool, with its signature runners and current input shapes."""

    def __init__(self, model: bytes, runner_keys: Sequence[str]) -> None:
        self.interpreter = new_interpreter(model)
        self.runners = {key: self.interpreter.get_signature_runner(key) for key in runner_keys}
        self.shapes: dict[int, tuple[int, ...]] = {}
        if not runner_keys:
            self.interpreter.allocate_tensors()

    def invoke_runner(self, key: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runners[key](**inputs)  # resizes inputs and allocates as TfLiteSession does

    def invoke_primary(
        self, inputs: Mapping[int, np.ndarray], outputs: Mapping[str, int]
    ) -> dict[str, np.ndarray]:
        """The model's main subgraph by tensor index: resize what changed, allocate, invoke."""
        interpreter = self.interpreter
        resized = False
        for index, array in inputs.items():
            if self.shapes.get(index) != array.shape:
                interpreter.resize_tensor_input(index, list(array.shape), strict=False)
                self.shapes[index] = array.shape
                resized = True
        if resized:
            try:
                interpreter.allocate_tensors()
            except RuntimeError:
                self.shapes.clear()  # the next call resizes again from a clean slate
                raise
        for index, array in inputs.items():
            interpreter.set_tensor(index, array)
        interpreter.invoke()
        return {alias: interpreter.get_tensor(index) for alias, index in outputs.items()}


class InterpreterPool:
    """A fixed set of interpreters; a run takes one, and gives it back when done."""

    def __init__(self, model: bytes, size: int, runner_keys: Sequence[str]) -> None:
        self._free: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self.size = size
        for _ in range(size):
            self._free.put(_Slot(model, runner_keys))
        self._closed = False

    def take(self) -> _Slot:
        slot = None if self._closed else self._free.get()
        if slot is None:
            self._free.put(None)  # wake the next waiter too
            raise ServingError(Code.UNAVAILABLE, "the version is being unloaded")
        return slot

    def give_back(self, slot: _Slot) -> None:
        if not self._closed:
            self._free.put(slot)

    def close(self) -> None:
        """Drop every idle interpreter; any taken one is dropped when it comes back."""
        self._closed = True
        while True:
            try:
                self._free.get_nowait()
            except queue.Empty:
                break
        self._free.put(None)


class TFLiteServable:
    """One `model.tflite` version: its signatures and a pool of interpreters."""

    def __init__(self, path: str, options: TFLiteOptions) -> None:
        file = Path(path) / TFLITE_MODEL_FILE
        if not file.is_file():
            raise FileNotFoundError(
                f"{file} not found: --use_tflite_model loads model.tflite from every version "
                "folder; add it, or use --prefer_tflite_model to fall back to the SavedModel"
            )
        model = file.read_bytes()
        try:
            probe = new_interpreter(model)
        except ValueError as exc:
            raise ValueError(f"{file} is no TensorFlow Lite model: {exc}") from None
        self._defs = get_model_metadata_pb2.SignatureDefMap()
        self._signatures: dict[str, Signature] = {}
        # signature → (input alias → tensor index, output alias → tensor index), for the
        # signatures run on the main subgraph by tensor (not by a TF Lite signature runner)
        self._primary: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        metadata_defs = metadata_signature_defs(model)
        self._runner_keys: tuple[str, ...] = ()
        if metadata_defs:  # TF Serving's TfLiteSession serves these when the model has them
            self._from_signature_defs(probe, metadata_defs)
        elif probe.get_signature_list():
            self._runner_keys = tuple(sorted(probe.get_signature_list()))
            for key in self._runner_keys:
                self._describe_runner(key, probe.get_signature_runner(key))
        else:
            self._synthesise_default(probe)
        del probe
        pool = InterpreterPool(model, max(1, options.num_pools), self._runner_keys)
        self._pool: InterpreterPool | None = pool  # None once unloaded
        self._chunk_rows = 0
        self._splitter: ThreadPoolExecutor | None = None
        if options.interpreters_per_pool > 1:  # TfLiteSession's batch splitting
            self._chunk_rows = math.ceil(INITIAL_BATCH_SIZE / options.interpreters_per_pool)
            self._splitter = ThreadPoolExecutor(pool.size, "tflite-split")
        self._lock = threading.Lock()

    def _describe_runner(self, key: str, runner: Any) -> None:
        self._add_signature(
            key, runner.get_input_details(), runner.get_output_details(), "shape_signature"
        )

    def _from_signature_defs(
        self,
        interpreter: tf.lite.Interpreter,
        signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
    ) -> None:
        """The model's own SignatureDefs, served as written (aliases, dtypes, shapes), each
        tensor name checked against the main subgraph's and fixed to its legacy form."""
        inputs = {d["name"]: int(d["index"]) for d in interpreter.get_input_details()}
        outputs = {d["name"]: int(d["index"]) for d in interpreter.get_output_details()}
        for key, found in sorted(signature_defs.items()):
            signature_def = self._defs.signature_def[key]
            signature_def.CopyFrom(found)
            feeds, fetches = {}, {}
            for alias, info in signature_def.inputs.items():
                info.name = _fix_tensor_name(inputs, info.name, alias, "input")
                feeds[alias] = inputs[info.name]
            for alias, info in signature_def.outputs.items():
                info.name = _fix_tensor_name(outputs, info.name, alias, "output")
                fetches[alias] = outputs[info.name]
            self._signatures[key] = describe(key, signature_def)
            self._primary[key] = (feeds, fetches)

    def _synthesise_default(self, interpreter: tf.lite.Interpreter) -> None:
        """No SignatureDef in the model: TF Serving builds `serving_default` from the main
        subgraph's tensors, keyed by their legacy names, shapes as the tensors' dims."""
        inputs = {legacy_name(d["name"]): d for d in interpreter.get_input_details()}
        outputs = {legacy_name(d["name"]): d for d in interpreter.get_output_details()}
        self._add_signature(DEFAULT_SIGNATURE, inputs, outputs, "shape")
        self._primary[DEFAULT_SIGNATURE] = (
            {a: int(d["index"]) for a, d in inputs.items()},
            {a: int(d["index"]) for a, d in outputs.items()},
        )

    def _add_signature(
        self,
        key: str,
        inputs: Mapping[str, Mapping[str, Any]],
        outputs: Mapping[str, Mapping[str, Any]],
        metadata_shape: str,
    ) -> None:
        """The SignatureDef GetModelMetadata shows, and the engine's Signature beside it."""
        signature_def = self._defs.signature_def[key]
        signature_def.method_name = PREDICT_METHOD
        for alias, details in inputs.items():
            signature_def.inputs[alias].CopyFrom(_tensor_info(details, metadata_shape))
        for alias, details in outputs.items():
            signature_def.outputs[alias].CopyFrom(_tensor_info(details, metadata_shape))
        self._signatures[key] = Signature(
            name=key,
            method_name=PREDICT_METHOD,
            inputs={a: _spec(a, d) for a, d in sorted(inputs.items())},
            outputs={a: _spec(a, d) for a, d in sorted(outputs.items())},
        )

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        spec = self._signatures[signature]
        # Dtypes are checked here (the interpreter would copy the bytes as they are); a
        # shape other than the tensor's is resized to, as TfLiteSession's
        # ResizeInputTensor does, and what the model cannot take fails in the interpreter.
        check_dtypes(spec, inputs)
        feeds = {alias: self._feed(spec.inputs[alias], array) for alias, array in inputs.items()}
        fetches = tuple(output_filter) or tuple(spec.outputs)
        rows = self._split_rows(feeds)
        if rows:
            parts = [
                {alias: array[start : start + self._chunk_rows] for alias, array in feeds.items()}
                for start in range(0, rows, self._chunk_rows)
            ]
            assert self._splitter is not None
            results = list(self._splitter.map(lambda p: self._run_one(signature, p), parts))
            return {name: np.concatenate([r[name] for r in results]) for name in fetches}
        result = self._run_one(signature, feeds)
        return {name: result[name] for name in fetches}

    @staticmethod
    def _feed(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        if spec.dtype == np.dtype(object):
            return np.asarray(array, dtype=np.bytes_)
        return np.ascontiguousarray(array)

    def _split_rows(self, feeds: Mapping[str, np.ndarray]) -> int:
        """The batch size when this request is split across interpreters, else 0."""
        if not self._chunk_rows or not feeds:
            return 0
        sizes = {array.shape[0] if array.ndim else -1 for array in feeds.values()}
        size = sizes.pop() if len(sizes) == 1 else -1
        return size if size > self._chunk_rows else 0

    def _run_one(self, signature: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        pool = self._pool
        if pool is None:
            raise ServingError(Code.UNAVAILABLE, "the version is being unloaded")
        slot = pool.take()
        try:
            primary = self._primary.get(signature)
            if primary is None:
                return slot.invoke_runner(signature, feeds)
            indices, outputs = primary
            return slot.invoke_primary({indices[a]: v for a, v in feeds.items()}, outputs)
        except (ValueError, RuntimeError) as exc:  # TFLite refuses a value or cannot resize
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"signature '{signature}' of the TensorFlow Lite model: "
                f"{str(exc).strip().splitlines()[0]}",
            ) from None
        finally:
            pool.give_back(slot)

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        out.CopyFrom(self._defs)
        return out

    @property
    def closed(self) -> bool:
        return self._pool is None

    def unload(self) -> None:
        """Drop the interpreters (their tensors and arenas go with them)."""
        with self._lock:
            pool, self._pool = self._pool, None
            splitter, self._splitter = self._splitter, None
        if splitter is not None:
            splitter.shutdown(wait=True)
        if pool is not None:
            pool.close()


class SavedModelOrTFLiteLoader:
    """The `tensorflow` platform's loader: model.tflite or the SavedModel, per version folder,
    as SavedModelBundleFactory decides (`prefer_tflite_model && TfLiteModelFound(path)`)."""

    platform = "tensorflow"

    def __init__(self, saved_model: Loader, options: TFLiteOptions) -> None:
        self._saved_model = saved_model
        self._options = options

    def load(self, path: str) -> Servable:
        if self._options.serves_tflite(path):
            return TFLiteServable(path, self._options)
        return self._saved_model.load(path)
