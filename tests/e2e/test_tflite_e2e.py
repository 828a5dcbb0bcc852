"""TFLite versions through a real server with --prefer_tflite_model: Predict over gRPC and
REST equals the SavedModel's answer, GetModelMetadata shows the signature runners'
signatures, bad input is INVALID_ARGUMENT, and a TFLite v1 -> v2 swap under load loses
no request. The digits model is the example trainer's SavedModel, converted here."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from pyserving.adapters.loaders.platforms import PlatformOptions, make_loader
from tests.adapters.test_tflite_loader import half_plus_two_tflite
from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.util.processes import free_port

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus


@pytest.fixture(scope="module")
def lite_versions(trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1 and 2 of the digits model: the SavedModel and its model.tflite beside it."""
    root = tmp_path_factory.mktemp("mnist_lite")
    for version in (1, 2):
        folder = root / str(version)
        shutil.copytree(trained_models.export_dir / str(version), folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(folder), signature_keys=["predict_images"]
        )
        (folder / "model.tflite").write_bytes(converter.convert())
    return root


def copy_version(source: Path, into: Path) -> None:
    staging = into / f".staging-{source.name}"
    shutil.copytree(source, staging)
    staging.rename(into / source.name)


def saved_model_scores(folder: Path, images: np.ndarray) -> np.ndarray:
    servable = make_loader("tensorflow", PlatformOptions()).load(str(folder))
    try:
        return servable.run("predict_images", {"images": images}, ("scores",))["scores"]
    finally:
        servable.unload()


def scores_of(reply: predict_pb2.PredictResponse) -> np.ndarray:
    return tf.make_ndarray(reply.outputs["scores"])


def rest_post(port: int, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_tflite_versions_serve_as_the_saved_model_does(
    tmp_path: Path, start_server, lite_versions: Path, trained_models: TrainedModels
) -> None:
    mnist, hp2 = tmp_path / "mnist", tmp_path / "hp2"
    mnist.mkdir()
    copy_version(lite_versions / "2", mnist)
    (hp2 / "1").mkdir(parents=True)
    (hp2 / "1" / "model.tflite").write_bytes(half_plus_two_tflite())  # no SavedModel at all
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "mnist" base_path: "{mnist}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "hp2" base_path: "{hp2}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    rest_port = free_port()
    server = start_server(
        f"--model_config_file={config}",
        f"--rest_api_port={rest_port}",
        "--prefer_tflite_model",
        "--num_tflite_pools=2",
        *FAST_FLAGS,
    )
    server.wait_serving()
    images = trained_models.dataset.test_images[:20].astype(np.float32)
    expected = saved_model_scores(lite_versions / "2", images)
    pixels = images.shape[1]

    # gRPC Predict equals the SavedModel's answer
    reply = server.predict_stub.Predict(predict_request(images), timeout=30)
    assert reply.model_spec.version.value == 2
    np.testing.assert_allclose(scores_of(reply), expected, rtol=1e-4, atol=1e-5)

    # REST Predict too
    status, body = rest_post(
        rest_port,
        "/v1/models/mnist:predict",
        {"signature_name": "predict_images", "instances": images[:5].tolist()},
    )
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], expected[:5], rtol=1e-4, atol=1e-5)

    # a folder with only model.tflite serves: y = 0.5x + 2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp2"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[4.0], [10.0]], np.float32)))
    reply = server.predict_stub.Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [[4.0], [7.0]])
    status, body = rest_post(rest_port, "/v1/models/hp2:predict", {"instances": [[2.0]]})
    assert (status, body) == (200, {"predictions": [[3.0]]})

    # GetModelMetadata shows the signature runner's signature
    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "mnist"
    meta = server.predict_stub.GetModelMetadata(meta_request, timeout=10)
    defs = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(defs)
    assert list(defs.signature_def) == ["predict_images"]
    signature = defs.signature_def["predict_images"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["images"] and list(signature.outputs) == ["scores"]
    images_info, scores_info = signature.inputs["images"], signature.outputs["scores"]
    assert images_info.dtype == scores_info.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in images_info.tensor_shape.dim] == [-1, pixels]
    assert [d.size for d in scores_info.tensor_shape.dim] == [-1, 10]

    # wrong input name, dtype, shape: INVALID_ARGUMENT, over gRPC and REST. A shape is
    # resized to, as TfLiteSession does, so the one the model cannot take fails in the
    # interpreter, with its message.
    wrong_name = predict_request(images[:1])
    wrong_name.inputs["pixels"].CopyFrom(wrong_name.inputs.pop("images"))
    wrong_dtype = predict_request(images[:1])
    wrong_dtype.inputs["images"].CopyFrom(tf.make_tensor_proto(images[:1].astype(np.int32)))
    wrong_shape = predict_request(images[:1, :-4])
    for bad, wording in (
        (wrong_name, "Signature input alias: images(feed name: "),
        (wrong_dtype, "expects dtype float but int32 was provided"),
        (wrong_shape, "signature 'predict_images' of the TensorFlow Lite model: "),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            server.predict_stub.Predict(bad, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert wording in caught.value.details()
    status, body = rest_post(
        rest_port,
        "/v1/models/mnist:predict",
        {"signature_name": "predict_images", "instances": images[:1, :-4].tolist()},
    )
    assert status == 400 and "of the TensorFlow Lite model: " in body["error"]
    reply = server.predict_stub.Predict(predict_request(images[:3]), timeout=30)  # still serves
    np.testing.assert_allclose(scores_of(reply), expected[:3], rtol=1e-4, atol=1e-5)


def test_a_tflite_swap_under_load_loses_no_request(
    tmp_path: Path, start_server, lite_versions: Path, trained_models: TrainedModels
) -> None:
    models = tmp_path / "mnist"
    models.mkdir()
    copy_version(lite_versions / "1", models)
    server = start_server(
        "--model_name=mnist",
        f"--model_base_path={models}",
        "--prefer_tflite_model",
        "--enable_batching",
        *FAST_FLAGS,
    )
    server.wait_serving()
    images = trained_models.dataset.test_images[:8].astype(np.float32)
    expected = {v: saved_model_scores(lite_versions / str(v), images) for v in (1, 2)}
    stop = threading.Event()
    answered: list[int] = []
    failures: list[str] = []

    def load() -> None:
        while not stop.is_set():
            try:
                reply = server.predict_stub.Predict(predict_request(images), timeout=30)
            except grpc.RpcError as exc:
                failures.append(f"{exc.code()}: {exc.details()}")
                continue
            version = reply.model_spec.version.value
            if not np.allclose(scores_of(reply), expected[version], rtol=1e-4, atol=1e-5):
                failures.append(f"version {version} answered wrongly")
            answered.append(version)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        server.wait_for(lambda: len(answered) >= 20, what="traffic on version 1")
        copy_version(lite_versions / "2", models)
        server.wait_for(
            lambda: server.version_states("mnist").get(1) == ModelVersionStatus.END,
            what="version 1 unloaded after version 2 became available",
        )
        seen = len(answered)
        server.wait_for(lambda: len(answered) >= seen + 20, what="traffic on version 2")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert answered[0] == 1 and answered[-1] == 2
    assert server.version_states("mnist")[2] == ModelVersionStatus.AVAILABLE
