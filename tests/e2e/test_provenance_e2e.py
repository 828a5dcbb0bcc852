"""Which model bytes made each answer, on real servers in both modes (one process, and two
front-ends over the engine): every Predict and infer answer carries the answering version's
fingerprint on each protocol and transport (TF Serving gRPC trailing metadata, REST header,
the Open Inference Protocol's response parameters through tritonclient), and so do the
request log's records, the load's event-log line, ListModels and the Open Inference
Protocol's model metadata; two versions trained
differently have different fingerprints, each TensorFlow's own reading of its export; a
TF1 export (no fingerprint.pb) answers Classify and Regress with pyserving's digest."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tensorflow_serving.apis import classification_pb2

from pyserving.adapters.loaders.provenance import saved_model_fingerprint
from pyserving.adapters.protos import model_registry_pb2, model_registry_pb2_grpc
from pyserving.api.envelope.request_records import logged_fingerprint
from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.e2e.test_request_log_e2e import model_entry, read_logs
from tests.example_models import example, export_tf1_model
from tests.util.processes import ServerProcess, free_port

MODEL = "mnist"
SIGNATURE = "predict_images"
# Each protocol's Predict/infer, per version: TF Serving gRPC and REST, OIP gRPC and REST.
ANSWERS_PER_VERSION = 4


@dataclass
class Served:
    server: ServerProcess
    rest_port: int
    prefix: Path
    events: Path
    expected: dict[int, str]  # version → "saved_model:" + TensorFlow's singleprint
    tf1_digest: str  # the TF1 model's version 1: "sha256:..."


@pytest.fixture(scope="module", params=[0, 2], ids=["workers0", "workers2"])
def served(
    request: pytest.FixtureRequest,
    trained_models: TrainedModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    workers = request.param
    tmp = tmp_path_factory.mktemp(f"provenance{workers}")
    models = tmp / "models"
    for version in (1, 2):
        trained_models.copy_version(version, models)
    tf1 = export_tf1_model(tmp / "tf1" / "1").parent
    prefix = tmp / "logs" / MODEL
    entry = model_entry(MODEL, models, prefix).replace(
        f'base_path: "{models}"', f'base_path: "{models}" model_version_policy {{ all {{}} }}'
    )
    config = tmp / "models.config"
    config.write_text(
        f'model_config_list {{ {entry} config {{ name: "tf1" base_path: "{tf1}" }} }}'
    )
    rest_port, events = free_port(), tmp / "events.jsonl"
    server = ServerProcess(
        [
            f"--model_config_file={config}",
            f"--rest_api_port={rest_port}",
            f"--event_log={events}",
            f"--workers={workers}",
            *FAST_FLAGS,
        ],
        tmp / "server.log",
    )
    server.wait_serving(timeout=120)
    server.wait_for(lambda: set(server.version_states(MODEL)) == {1, 2}, what="both versions")
    expected = {
        v: "saved_model:"
        + tf.saved_model.experimental.read_fingerprint(str(models / str(v))).singleprint()
        for v in (1, 2)
    }
    tf1_digest = saved_model_fingerprint(str(tf1 / "1"))
    yield Served(server, rest_port, prefix, events, expected, tf1_digest)
    assert server.stop() == 0


def grpc_predict(served: Served, images: np.ndarray, version: int) -> dict[str, str]:
    request = predict_request(images, version=version)
    reply, call = served.server.predict_stub.Predict.with_call(request, timeout=30)
    assert reply.model_spec.version.value == version
    return dict(call.trailing_metadata())


def rest_predict(served: Served, images: np.ndarray, version: int) -> dict[str, str]:
    body = json.dumps({"signature_name": SIGNATURE, "instances": images.tolist()}).encode()
    url = f"http://127.0.0.1:{served.rest_port}/v1/models/{MODEL}/versions/{version}:predict"
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as reply:
        assert "predictions" in json.loads(reply.read())
        return {k.lower(): v for k, v in reply.headers.items()}


def oip_parameters(served: Served, images: np.ndarray, version: int) -> tuple[str, str]:
    """The fingerprint in the response parameters, by tritonclient's gRPC and HTTP clients."""
    grpc_input = triton_grpc.InferInput("images", list(images.shape), "FP32")
    grpc_input.set_data_from_numpy(images)
    with triton_grpc.InferenceServerClient(f"127.0.0.1:{served.server.port}") as client:
        answer = client.infer(MODEL, [grpc_input], model_version=str(version))
        from_grpc = answer.get_response().parameters["model_fingerprint"].string_param
    http_input = triton_http.InferInput("images", list(images.shape), "FP32")
    http_input.set_data_from_numpy(images, binary_data=True)
    with triton_http.InferenceServerClient(f"127.0.0.1:{served.rest_port}") as client:
        answer = client.infer(MODEL, [http_input], model_version=str(version))
        from_http = answer.get_response()["parameters"]["model_fingerprint"]
    return from_grpc, from_http


def test_every_answer_on_every_protocol_names_the_bytes_that_made_it(
    served: Served, trained_models: TrainedModels
) -> None:
    images = trained_models.dataset.test_images[:2].astype(np.float32)
    expected = served.expected
    assert expected[1] != expected[2]  # trained differently: other variables, other hashes
    for version in (1, 2):
        trailers = grpc_predict(served, images, version)
        assert trailers["x-model-fingerprint"] == expected[version]
        assert trailers["x-model-version"] == str(version)
        headers = rest_predict(served, images, version)
        assert headers["x-model-fingerprint"] == expected[version]
        assert headers["x-model-version"] == str(version)
        assert oip_parameters(served, images, version) == (expected[version],) * 2

    served.server.wait_for(
        lambda: len(read_logs(served.prefix)) >= 2 * ANSWERS_PER_VERSION, what="records"
    )
    records = read_logs(served.prefix)
    logged = sorted(
        (r.log_metadata.model_spec.version.value, logged_fingerprint(r)) for r in records
    )
    assert logged == sorted((v, expected[v]) for v in (1, 2) for _ in range(ANSWERS_PER_VERSION))


def test_classify_and_regress_of_a_tf1_export_carry_its_digest(served: Served) -> None:
    assert served.tf1_digest.startswith("sha256:")
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "tf1"
    classify.input.example_list.examples.extend([example(1.0)])
    _, call = served.server.predict_stub.Classify.with_call(classify, timeout=30)
    assert dict(call.trailing_metadata())["x-model-fingerprint"] == served.tf1_digest
    body = json.dumps({"signature_name": "regress_x", "examples": [{"x": 1.5}]}).encode()
    url = f"http://127.0.0.1:{served.rest_port}/v1/models/tf1:regress"
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as reply:
        assert reply.headers["x-model-fingerprint"] == served.tf1_digest


def test_the_load_line_and_list_models_name_each_versions_fingerprint(served: Served) -> None:
    loads = [json.loads(line) for line in served.events.read_text().splitlines()]
    loaded = {
        (e["model"], e["version"]): e["fingerprint"] for e in loads if e["kind"] == "load_succeeded"
    }
    assert loaded == {
        **{(MODEL, v): fingerprint for v, fingerprint in served.expected.items()},
        ("tf1", 1): served.tf1_digest,
    }
    with grpc.insecure_channel(f"127.0.0.1:{served.server.port}") as channel:
        stub = model_registry_pb2_grpc.ModelRegistryStub(channel)
        reply = stub.ListModels(model_registry_pb2.ListModelsRequest(model_name=MODEL), timeout=10)
    [model] = reply.models
    assert {v.version: v.fingerprint for v in model.versions} == served.expected


def test_open_inference_protocol_metadata_names_the_described_versions_fingerprint(
    served: Served,
) -> None:
    with triton_http.InferenceServerClient(f"127.0.0.1:{served.rest_port}") as client:
        for version, asked in ((1, "1"), (2, "")):  # no version: the latest serving
            metadata = client.get_model_metadata(MODEL, asked)
            assert metadata["versions"] == ["1", "2"]
            assert metadata["parameters"] == {
                "model_fingerprint": served.expected[version],
                "model_version": str(version),
            }
