"""End-to-end fixtures: real SavedModels from the example trainer, real server processes.

Models are trained once per test session (few iterations: seconds) and shared; each
test copies the versions it needs into its own watched folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tensorflow_serving.apis import (
    predict_pb2,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

from mnist_input_data import Dataset, load_dataset  # noqa: E402

from tests.util.processes import ServerProcess, run_python  # noqa: E402
from tests.util.sources import stage_version  # noqa: E402
from tests.util.workers import WORKER_IDS, WORKER_MODES  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is marked e2e, so `-m "not e2e"` runs the unit tests only."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@dataclass(frozen=True)
class TrainedModels:
    """An export folder holding versions 1 (barely trained) and 2 (well trained)."""

    export_dir: Path
    dataset: Dataset

    def copy_version(self, version: int, into: Path) -> Path:
        """Copy a version into a watched folder atomically, as a careful user would."""
        return stage_version(self.export_dir, version, into)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> TrainedModels:
    export_dir = tmp_path_factory.mktemp("mnist_model")

    def train(version: int, iterations: int) -> subprocess.CompletedProcess[str]:
        return run_python(
            str(EXAMPLES / "mnist_saved_model.py"),
            f"--training_iteration={iterations}",
            f"--model_version={version}",
            str(export_dir),
        )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(train, (1, 2), (100, 2000)))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return TrainedModels(export_dir, load_dataset(None))


@pytest.fixture(scope="module", params=WORKER_MODES, ids=WORKER_IDS)
def module_workers(request: pytest.FixtureRequest) -> int:
    """The `--workers` of a module-scoped server fixture: taking it runs the module's tests
    both ways (in-process, then with front-end workers), one server each."""
    return int(request.param)


@pytest.fixture
def start_server(tmp_path: Path, workers: int) -> Iterator:
    """Start servers with `start_server(*flags)` (with `--workers` where the test is
    parametrized so); all are stopped after the test."""
    servers: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path / f"server-{len(servers)}.log", workers=workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


FAST_FLAGS = ("--file_system_poll_wait_seconds=0.2", "--max_num_load_retries=0")


def predict_request(
    images: np.ndarray,
    model: str = "mnist",
    version: int | None = None,
    signature: str = "predict_images",
) -> predict_pb2.PredictRequest:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images.astype(np.float32)))
    return request


def error_rate(server: ServerProcess, dataset: Dataset, n: int = 200) -> float:
    """Fraction of the first `n` held-out images the served model gets wrong (one batch)."""
    images, labels = dataset.test_images[:n], dataset.test_labels[:n]
    reply = server.predict_stub.Predict(predict_request(images), timeout=30)
    scores = np.array(reply.outputs["scores"].float_val).reshape(len(images), 10)
    return float(np.mean(scores.argmax(axis=1) != labels))


def run_example_client(server: ServerProcess, num_tests: int = 300) -> float:
    """Run the tutorial's client (10 in flight) and return the error rate it prints last."""
    result = run_python(
        str(EXAMPLES / "mnist_client.py"),
        f"--num_tests={num_tests}",
        f"--server=127.0.0.1:{server.port}",
        "--concurrency=10",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"Inference error rate: ([\d.]+)%", last)
    assert match, result.stdout
    assert "RPC errors" not in result.stdout
    return float(match.group(1))
