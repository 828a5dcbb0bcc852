"""Serve a model from an S3 bucket on a real S3-compatible server: discover, swap, delete,
and ride out an outage without unloading what serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorflow_serving.apis import get_model_status_pb2

from tests.e2e.conftest import TrainedModels, predict_request
from tests.s3_server import s3_server, s3_settings, use_s3_server
from tests.util.processes import ServerProcess

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def test_serve_swap_and_outage_from_s3(
    trained_models: TrainedModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    with s3_server() as endpoint:
        env = s3_settings(endpoint)
        use_s3_server(monkeypatch, endpoint)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("models")
        fs.put(str(trained_models.export_dir / "1"), "models/mnist/1", recursive=True)
        cache = tmp_path / "cache"
        server = ServerProcess(
            [
                "--model_name=mnist",
                "--model_base_path=s3://models/mnist",
                "--file_system_poll_wait_seconds=0.5",
                f"--model_cache_dir={cache}",
                "--max_num_load_retries=0",
            ],
            tmp_path / "server.log",
            env=env,
        )
        try:
            server.wait_serving(timeout=90)
            images = trained_models.dataset.test_images[:1]
            assert (
                server.predict_stub.Predict(predict_request(images)).model_spec.version.value == 1
            )
            assert (cache / "mnist" / "1" / "saved_model.pb").is_file()

            # Swap by uploading a new version.
            fs.put(str(trained_models.export_dir / "2"), "models/mnist/2", recursive=True)
            server.wait_for(
                lambda: server.version_states("mnist") == {1: END, 2: AVAILABLE},
                what="v2 served from S3",
            )
            assert (
                server.predict_stub.Predict(predict_request(images)).model_spec.version.value == 2
            )
            server.wait_for(lambda: not (cache / "mnist" / "1").exists(), what="v1 evicted")
        except BaseException:
            server.stop()
            raise
        port = int(endpoint.rsplit(":", 1)[1])

    # The store is unreachable: the server keeps serving v2 and says why it cannot list.
    server.wait_for(
        lambda: "base_path_unreadable" in server.log_text(), 30, "the failed listing logged"
    )
    assert server.predict_stub.Predict(predict_request(images)).model_spec.version.value == 2
    assert "pyserving-test-secret" not in server.log_text()

    # It comes back (same data): deleting v2 brings v1 back, downloaded again.
    with s3_server(port=port, reset=False):
        fs.rm("models/mnist/2", recursive=True)
        server.wait_for(
            lambda: server.version_states("mnist").get(1) == AVAILABLE,
            timeout=120,
            what="v1 re-aspired after v2 was deleted",
        )
        assert server.predict_stub.Predict(predict_request(images)).model_spec.version.value == 1
        assert server.stop() == 0
