"""The `tensorflow` platform: SavedModels, TF2 and TF1 alike, through tf.saved_model.load.

Signature metadata for GetModelMetadata is read from the SavedModel's own MetaGraphDef,
so clients see exactly the SignatureDefs TF Serving would show them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from pyserving.adapters.sources.file_system import SAVED_MODEL_FILES
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable import Signature, TensorSpec


class IncompleteVersionError(Exception):
    """The folder holds no SavedModel (yet): nothing to load."""


def read_meta_graph(path: str, tags: Sequence[str]) -> meta_graph_pb2.MetaGraphDef:
    folder = Path(path)
    pb, pbtxt = (folder / name for name in SAVED_MODEL_FILES)
    saved_model = saved_model_pb2.SavedModel()
    if pb.is_file():
        saved_model.ParseFromString(pb.read_bytes())
    elif pbtxt.is_file():
        text_format.Parse(pbtxt.read_text(), saved_model)
    else:
        raise IncompleteVersionError(f"no saved_model.pb or saved_model.pbtxt in {path}")
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(
        f"SavedModel at {path} has no MetaGraph tagged {sorted(wanted)}; found {found}: "
        "set --saved_model_tags to one of those"
    )


def _tensor_spec(alias: str, spec: Any) -> TensorSpec:
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    return TensorSpec(alias=alias, dtype=np.dtype(spec.dtype.as_numpy_dtype), shape=shape)


class TensorFlowServable:
    def __init__(self, path: str, tags: Sequence[str]) -> None:
        self._meta_graph = read_meta_graph(path, tags)
        self._model: Any = tf.saved_model.load(path, tags=list(tags))
        self._functions: dict[str, Any] = dict(self._model.signatures)
        self._signatures = {name: self._describe(name, fn) for name, fn in self._functions.items()}

    def _describe(self, name: str, fn: Any) -> Signature:
        _, kwargs = fn.structured_input_signature
        outputs = fn.structured_outputs
        signature_def = self._meta_graph.signature_def.get(name)
        return Signature(
            name=name,
            method_name=signature_def.method_name if signature_def else "",
            inputs={k: _tensor_spec(k, s) for k, s in sorted(kwargs.items())},
            outputs={k: _tensor_spec(k, t) for k, t in sorted(outputs.items())},
        )

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        try:
            result = self._functions[signature](**inputs)
            names = output_filter or result.keys()
            return {name: result[name].numpy() for name in names}
        except tf.errors.OpError as exc:
            raise ServingError(
                _CANONICAL.get(exc.error_code, Code.UNKNOWN), exc.message.split("\n")[0]
            ) from None
        except (TypeError, ValueError) as exc:  # inputs the function's signature rejects
            raise ServingError(Code.INVALID_ARGUMENT, str(exc).split("\n")[0]) from None

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        out = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in self._meta_graph.signature_def.items():
            out.signature_def[name].CopyFrom(signature_def)
        return out

    def unload(self) -> None:
        self._functions = {}
        self._model = None


# TensorFlow's canonical error codes share gRPC's numbering.
_CANONICAL = {
    3: Code.INVALID_ARGUMENT,
    4: Code.DEADLINE_EXCEEDED,
    5: Code.NOT_FOUND,
    8: Code.RESOURCE_EXHAUSTED,
    9: Code.FAILED_PRECONDITION,
    12: Code.UNIMPLEMENTED,
    13: Code.INTERNAL,
    14: Code.UNAVAILABLE,
}


class TensorFlowLoader:
    platform = "tensorflow"

    def __init__(self, tags: Sequence[str] = ("serve",)) -> None:
        self._tags = tuple(tags)

    def load(self, path: str) -> TensorFlowServable:
        return TensorFlowServable(path, self._tags)
