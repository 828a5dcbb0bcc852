"""TF Serving's `Input` (a list of tf.Examples, optionally with a context) as a model input.

As TF Serving's util.cc does, each example becomes one element of a string tensor [N]
holding its serialized bytes; with `example_list_with_context` the context's bytes come
first, so protobuf's merge-on-parse gives every example the context's features, the
example's own values winning where both set one.
"""

from __future__ import annotations

import numpy as np
from tensorflow_serving.apis import input_pb2

from pyserving.engine.errors import invalid_argument


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """The examples of `request_input` as an object array of bytes, shape [N]."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        records = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        records = [context + e.SerializeToString() for e in with_context.examples]
    else:
        records = []
    if not records:
        raise invalid_argument("Input is empty.")
    tensor = np.empty(len(records), dtype=object)
    tensor[:] = records
    return tensor
