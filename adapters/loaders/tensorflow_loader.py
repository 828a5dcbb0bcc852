"""The `tensorflow` platform, as TF Serving's SavedModelBundle: a Session over the MetaGraph.

TF Serving does not run a SavedModel's TF2 functions. It loads the MetaGraph chosen by
the tags into a Session (restore and init ops run, assets fed), and every API feeds and
fetches tensors by the names in the MetaGraph's `signature_def` map. Doing the same here
gives TF Serving's input semantics (only the graph's own ops refuse a shape or a dtype),
a model call a tenth the cost of a concrete function's, and memory that comes back when
the Session is closed, not whenever Python's cyclic garbage collector next runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow.python.saved_model.loader_impl import SavedModelLoader
from tensorflow_serving.apis import get_model_metadata_pb2

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec

# A TF2 export stores its init op as a SignatureDef under this key; it is no serving
# signature (GetModelMetadata still shows it, as TF Serving's does).
INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclass(frozen=True)
class SessionOptions:
    """Each Session's ConfigProto: `config` (serialized) when given, as TF Serving's
    SessionBundleConfig.session_config; else TF Serving's
    --tensorflow_{intra,inter}_op_parallelism, combined (0: TF decides)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    config: bytes = b""

    def config_proto(self) -> config_pb2.ConfigProto:
        if self.config:
            return config_pb2.ConfigProto.FromString(self.config)
        return config_pb2.ConfigProto(
            intra_op_parallelism_threads=self.intra_op_threads,
            inter_op_parallelism_threads=self.inter_op_threads,
        )


def select_meta_graph(
    saved_model: saved_model_pb2.SavedModel, tags: Sequence[str], path: str
) -> meta_graph_pb2.MetaGraphDef:
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(
        f"SavedModel at {path} has no MetaGraph tagged {sorted(wanted)}; found {found}: "
        "set --saved_model_tags to one of those"
    )


def _numpy_dtype(enum: int) -> np.dtype:
    dtype = tf.dtypes.as_dtype(enum)
    return np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)


def _tensor_spec(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(None if d.size < 0 else d.size for d in shape.dim)
    return TensorSpec(alias=alias, dtype=_numpy_dtype(info.dtype), shape=dims, name=info.name)


def describe(name: str, signature_def: meta_graph_pb2.SignatureDef) -> Signature:
    return Signature(
        name=name,
        method_name=signature_def.method_name,
        inputs={k: _tensor_spec(k, v) for k, v in sorted(signature_def.inputs.items())},
        outputs={k: _tensor_spec(k, v) for k, v in sorted(signature_def.outputs.items())},
        defaults=frozenset(signature_def.defaults),
    )


def _tensor_name(info: meta_graph_pb2.TensorInfo, alias: str, signature: str) -> str:
    if info.WhichOneof("encoding") != "name":
        raise ServingError(
            Code.UNIMPLEMENTED,
            f"tensor '{alias}' of signature '{signature}' is a composite (sparse or ragged) "
            "tensor; only dense tensors are served",
        )
    return info.name


# `run`'s name for several signatures run at once (`combined_signature`); no SignatureDef
# key starts so (TF's keys are user names; "__" marks TF's own, as the init op's).
COMBINED_PREFIX = "__combined__:"


@dataclass(frozen=True)
class _Combined:
    call: Callable[..., list[np.ndarray]]
    num_feeds: int
    outputs: dict[str, int]  # "signature/alias" -> index in the callable's fetches


class SessionObserver(Protocol):
    """Told of the Session work TensorFlow's own metrics count (cc/saved_model/loader.cc,
    core/common_runtime metrics); times in microseconds."""

    def load_attempt(self, path: str, ok: bool, micros: float) -> None: ...

    def load_stage(self, path: str, stage: str, micros: float) -> None: ...

    def graph_run(self, micros: float) -> None: ...

    def graph_build(self, micros: float) -> None: ...


def _micros(started: float) -> float:
    return (time.perf_counter() - started) * 1e6


class TensorFlowServable:
    """One loaded version: its Graph, its Session, and a callable per (signature, fetches)."""

    runtime = "TF1"  # runtime_latency's label for a Session (TF Serving's predict_util.cc)

    def __init__(
        self,
        path: str,
        tags: Sequence[str],
        session: SessionOptions,
        observer: SessionObserver | None = None,
    ) -> None:
        self._observer = observer
        started = time.perf_counter()
        try:
            self._load(path, tags, session)
        except BaseException:
            if observer is not None:
                observer.load_attempt(path, False, _micros(started))
            raise
        if observer is not None:
            observer.load_attempt(path, True, _micros(started))

    def _load(self, path: str, tags: Sequence[str], session: SessionOptions) -> None:
        loader = SavedModelLoader(path)  # parses saved_model.pb(txt), once
        self._meta_graph = select_meta_graph(loader.saved_model, tags, path)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session.config_proto())
        try:
            with self._graph.as_default():
                # Restores the variables, feeds asset paths, runs the init/main op: the
                # steps of SavedModelLoader.load, timed as TF's loader.cc times its stages.
                started = time.perf_counter()
                saver, _ = loader.load_graph(self._graph, list(tags))
                loader.restore_variables(self._session, saver)
                restored = _micros(started)
                started = time.perf_counter()
                loader.run_init_ops(self._session, list(tags))
                initialised = _micros(started)
        except BaseException:
            self._session.close()
            raise
        if self._observer is not None:
            self._observer.load_stage(path, "restore_graph", restored)
            self._observer.load_stage(path, "init_graph", initialised)
        self._defs = {
            name: sig
            for name, sig in self._meta_graph.signature_def.items()
            if name != INIT_OP_SIGNATURE
        }
        self._signatures = {name: describe(name, sig) for name, sig in sorted(self._defs.items())}
        self._defaults = {
            name: {k: tf.make_ndarray(v) for k, v in sig.defaults.items()}
            for name, sig in self._defs.items()
            if sig.defaults
        }
        self._callables: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}
        self._combined: dict[str, _Combined] = {}
        self._lock = threading.Lock()

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        if signature.startswith(COMBINED_PREFIX):
            return self._run_combined(signature, inputs, output_filter)
        defaults = self._defaults.get(signature)
        if defaults:
            inputs = {**{k: v for k, v in defaults.items() if k not in inputs}, **inputs}
        feeds = tuple(sorted(inputs))
        fetches = tuple(output_filter) or tuple(self._signatures[signature].outputs)
        call = self._callables.get((signature, feeds, fetches)) or self._callable(
            signature, feeds, fetches
        )
        values = self._call(call, [inputs[alias] for alias in feeds])
        return dict(zip(fetches, values, strict=True))

    def _call(self, call: Callable[..., list[np.ndarray]], values: list[Any]) -> list[np.ndarray]:
        """One Session run of a made callable, TensorFlow's errors as serving errors."""
        started = time.perf_counter()
        try:
            outputs = call(*values)
        except tf.errors.OpError as exc:
            raise ServingError(Code.from_number(exc.error_code), exc.message) from None
        except (TypeError, ValueError) as exc:  # a value that is no tensor of any dtype
            raise ServingError(Code.INVALID_ARGUMENT, str(exc).split("\n")[0]) from None
        if self._observer is not None:
            self._observer.graph_run(_micros(started))
        return outputs

    def combined_signature(self, tasks: Sequence[tuple[str, Sequence[str]]]) -> str:
        """A name `run` takes for several signatures fed one input in one Session run, as
        TF Serving's MultiInference (multi_inference.cc): the set of their input tensors,
        each fed the same value (the `inputs` alias), and the set of their output tensors
        fetched once. `tasks`: (signature, output aliases); the outputs come back keyed
        "signature/alias". Made once per distinct `tasks`, then cached."""
        key = COMBINED_PREFIX + ";".join(f"{sig}:{','.join(outs)}" for sig, outs in tasks)
        if key in self._combined:
            return key
        feeds: set[str] = set()
        fetched: dict[str, str] = {}  # "signature/alias" -> tensor name
        for signature, outputs in tasks:
            sig = self._defs[signature]
            for alias, info in sig.inputs.items():
                feeds.add(_tensor_name(info, alias, signature))
            for alias in outputs:
                fetched[f"{signature}/{alias}"] = _tensor_name(sig.outputs[alias], alias, signature)
        fetch_names = sorted(set(fetched.values()))
        options = config_pb2.CallableOptions(feed=sorted(feeds), fetch=fetch_names)
        call = self._make_callable(options)
        index = {name: i for i, name in enumerate(fetch_names)}
        with self._lock:
            self._combined[key] = _Combined(
                call, len(feeds), {out: index[name] for out, name in fetched.items()}
            )
        return key

    def _run_combined(
        self, key: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> dict[str, np.ndarray]:
        combined = self._combined[key]
        (value,) = inputs.values()  # the serialized examples, fed to every input tensor
        values = self._call(combined.call, [value] * combined.num_feeds)
        wanted = output_filter or combined.outputs
        return {name: values[combined.outputs[name]] for name in wanted}

    def _callable(
        self, signature: str, feeds: tuple[str, ...], fetches: tuple[str, ...]
    ) -> Callable[..., list[np.ndarray]]:
        """Session::MakeCallable for these feed and fetch names; made once, then cached."""
        sig = self._defs[signature]
        options = config_pb2.CallableOptions(
            feed=[_tensor_name(sig.inputs[a], a, signature) for a in feeds],
            fetch=[_tensor_name(sig.outputs[a], a, signature) for a in fetches],
        )
        key = (signature, feeds, fetches)
        with self._lock:
            call = self._callables.get(key)
            if call is None:
                call = self._callables[key] = self._make_callable(options, locked=True)
            return call

    def _make_callable(
        self, options: config_pb2.CallableOptions, locked: bool = False
    ) -> Callable[..., list[np.ndarray]]:
        """Session::MakeCallable, timed as TensorFlow's graph build."""
        if not locked:
            with self._lock:
                return self._make_callable(options, locked=True)
        if self._session is None:
            raise ServingError(Code.UNAVAILABLE, "the version is being unloaded")
        started = time.perf_counter()
        try:
            call = self._session._make_callable_from_options(options)
        except tf.errors.OpError as exc:
            raise ServingError(Code.from_number(exc.error_code), exc.message) from None
        if self._observer is not None:
            self._observer.graph_build(_micros(started))
        return call

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in self._meta_graph.signature_def.items():
            out.signature_def[name].CopyFrom(signature_def)
        return out

    @property
    def closed(self) -> bool:
        """True once unloaded: the Session is closed and nothing can run."""
        return self._session is None

    def unload(self) -> None:
        """Release the callables, close the Session (its variables go), drop the Graph."""
        with self._lock:
            self._callables.clear()  # each releases its handle while the Session is open
            self._combined.clear()
            session, self._session = self._session, None
        if session is not None:
            session.close()
        self._graph = None


class TensorFlowLoader:
    platform = "tensorflow"

    def __init__(
        self,
        tags: Sequence[str] = ("serve",),
        session: SessionOptions | None = None,
        observer: SessionObserver | None = None,
    ) -> None:
        self._tags = tuple(tags)
        self._session = session or SessionOptions()
        self._observer = observer

    def load(self, path: str) -> TensorFlowServable:
        return TensorFlowServable(path, self._tags, self._session, self._observer)
