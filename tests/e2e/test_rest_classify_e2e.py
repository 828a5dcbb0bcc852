"""REST `:classify` and `:regress` on a TF1 classify/regress model: the same results as
gRPC Classify/Regress for the same examples, and the same errors as HTTP statuses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2, regression_pb2

from tests.e2e.conftest import FAST_FLAGS
from tests.example_models import LABELS, example, export_tf1_model
from tests.util.processes import ServerProcess, serving


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_workers: int
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("rest_classify")
    export_tf1_model(tmp / "models" / "1")
    with serving(
        ["--model_name=tf1", f"--model_base_path={tmp / 'models'}",
         "--enable_signature_method_name_check=true", *FAST_FLAGS],
        tmp / "server.log",
        module_workers,
        rest=True,
    ) as process:  # fmt: skip
        yield process


def post(server: ServerProcess, path: str, doc: dict) -> tuple[int, dict]:
    return server.call(path, json.dumps(doc).encode())


XS = (1.5, -0.5)


def test_classify_equals_grpc(server: ServerProcess) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tf1"
    request.input.example_list_with_context.context.CopyFrom(example(0.0, bias=1.5))
    request.input.example_list_with_context.examples.extend(example(x) for x in XS)
    reply = server.predict_stub.Classify(request, timeout=30)
    expected = [
        [[c.label, np.float32(c.score)] for c in item.classes]
        for item in reply.result.classifications
    ]
    status, body = post(
        server,
        "/v1/models/tf1/versions/1:classify",
        {"context": {"bias": 1.5}, "examples": [{"x": x} for x in XS]},
    )
    assert status == 200, body
    got = [[[label, np.float32(score)] for label, score in row] for row in body["results"]]
    assert got == expected
    assert [label for label, _ in body["results"][0]] == list(LABELS)


def test_regress_equals_grpc(server: ServerProcess) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "tf1"
    request.model_spec.signature_name = "regress_x"
    request.input.example_list.examples.extend(example(x) for x in XS)
    expected = [
        r.value for r in server.predict_stub.Regress(request, timeout=30).result.regressions
    ]
    status, body = post(
        server,
        "/v1/models/tf1:regress",
        {"signature_name": "regress_x", "examples": [{"x": [x]} for x in XS]},
    )
    assert status == 200, body
    assert np.array(body["results"], np.float32).tolist() == expected


@pytest.mark.parametrize(
    ("path", "doc", "status", "message"),
    [
        ("/v1/models/tf1:classify", {"signature_name": "regress_x", "examples": [{"x": 1.5}]},
         400, "Expected classification signature method_name to be tensorflow/serving/classify"),
        ("/v1/models/tf1:regress", {"examples": []}, 400, "'examples' value is an empty array"),
        ("/v1/models/tf1:classify", {"instances": [1]}, 400, "key 'examples' is expected"),
        ("/v1/models/nope:classify", {"examples": [{"x": 1.5}]}, 404,
         "Servable not found for request: Latest(nope)"),
    ],
)  # fmt: skip
def test_errors(server: ServerProcess, path: str, doc: dict, status: int, message: str) -> None:
    got, body = post(server, path, doc)
    assert got == status and message in body["error"], body
