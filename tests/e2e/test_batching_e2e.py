"""`--enable_batching` against a real server and the example's SavedModel.

The tutorial's client at concurrency 10 gets exactly the predictions one big request
gets, while the event log shows the server merged requests into batches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import FAST_FLAGS, TrainedModels, error_rate, run_example_client
from tests.util.processes import refused_start

pytestmark = pytest.mark.e2e

# Requests wait up to 50 ms for company, so concurrent ones surely share a batch.
BATCHING_FILE = """
max_batch_size { value: 256 }
batch_timeout_micros { value: 50000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 1 }
"""


def test_tutorial_client_with_batching_gets_unchanged_predictions(
    trained_models: TrainedModels, start_server, tmp_path: Path
) -> None:
    watched = tmp_path / "monitored"
    trained_models.copy_version(2, watched)
    params = tmp_path / "batching.config"
    params.write_text(BATCHING_FILE)
    events = tmp_path / "events.jsonl"
    server = start_server(
        "--model_name=mnist",
        f"--model_base_path={watched}",
        "--enable_batching",
        f"--batching_parameters_file={params}",
        f"--event_log={events}",
        *FAST_FLAGS,
    )
    server.wait_serving()
    # One request of 200 rows (its own batch), as the reference...
    expected = error_rate(server, trained_models.dataset, n=200)
    # ...and the tutorial's client: 200 one-image requests, 10 in flight at a time.
    rate = run_example_client(server, num_tests=200)
    assert abs(rate - 100 * expected) < 0.051  # the client prints one decimal
    assert server.stop() == 0
    runs = [
        record
        for record in map(json.loads, events.read_text().splitlines())
        if record["kind"] == "batch_run"
    ]
    sizes = [r["size"] for r in runs]
    assert sum(sizes) == 200 + 200  # the big request, then the client's 200 one-image requests
    assert max(s for s in sizes if s != 200) > 1, sizes  # concurrent requests were merged
    assert all(r["model"] == "mnist" and r["signature"] == "predict_images" for r in runs)


def test_batching_file_without_enable_batching_is_refused_at_start(tmp_path: Path) -> None:
    params = tmp_path / "batching.config"
    params.write_text(BATCHING_FILE)
    stderr = refused_start(
        "--model_name=mnist",
        f"--model_base_path={tmp_path}",
        f"--batching_parameters_file={params}",
    )
    assert "add --enable_batching" in stderr
