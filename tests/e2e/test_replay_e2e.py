"""Replay the event log of a real server: it verifies, it agrees with GetModelStatus, and
`--at` names the version and fingerprint that the answers of that moment named.

The scenario: v1 serves, v2 is copied in and replaces it, a v3 with a garbage
saved_model.pb fails to load (v2 keeps serving), then SIGTERM. A second test kills a
server with SIGKILL, leaves a torn line, restarts on the same log and replays both runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tensorflow_serving.apis import get_model_status_pb2

from pyserving.api.view_messages import STATE_TO_PROTO
from pyserving.statemachines.servable_version import State
from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.recorded_runs import read_records, write_records
from tests.util.processes import ServerProcess, run_python

Status = get_model_status_pb2.ModelVersionStatus


def pyserving_replay(*args: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "pyserving", "replay", *args, timeout=120)


def answer(server: ServerProcess, models: TrainedModels) -> tuple[int, str, float]:
    """One Predict: the version and fingerprint its answer named, and when it came."""
    request = predict_request(models.dataset.test_images[:1])
    reply, call = server.predict_stub.Predict.with_call(request, timeout=30)
    trailers = dict(call.trailing_metadata())
    assert trailers["x-model-version"] == str(reply.model_spec.version.value)
    return reply.model_spec.version.value, trailers["x-model-fingerprint"], time.time()


def test_replay_of_a_real_scenario_verifies_and_matches_get_model_status(
    trained_models: TrainedModels, start_server, tmp_path: Path
) -> None:
    watched = tmp_path / "monitored"
    event_log = tmp_path / "events.jsonl"
    trained_models.copy_version(1, watched)
    server = start_server(
        "--model_name=mnist",
        f"--model_base_path={watched}",
        f"--event_log={event_log}",
        *FAST_FLAGS,
    )
    server.wait_serving()
    answered_by_v1 = answer(server, trained_models)
    trained_models.copy_version(2, watched)
    server.wait_for(
        lambda: server.version_states("mnist") == {1: Status.END, 2: Status.AVAILABLE},
        what="the swap to v2",
    )
    answered_by_v2 = answer(server, trained_models)
    broken = watched / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x00 this is not a SavedModel \xff" * 10)
    server.wait_for(lambda: 3 in server.version_states("mnist"), what="v3 to be tried")
    server.wait_for(
        lambda: server.version_states("mnist")[3] == Status.END, what="v3's load to fail"
    )
    reported = server.version_states("mnist")
    settled_at = time.time()
    assert reported == {1: Status.END, 2: Status.AVAILABLE, 3: Status.END}
    time.sleep(0.05)
    assert server.stop() == 0

    table = pyserving_replay(str(event_log))
    assert table.returncode == 0, table.stdout + table.stderr
    assert "VERIFIED" in table.stdout
    for version in (1, 2, 3):
        assert f"version {version} (run 1)" in table.stdout
    assert "stopped cleanly" in table.stdout

    as_json = pyserving_replay(str(event_log), "--format=json", f"--state-at={settled_at:.6f}")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    replayed = {s["version"]: STATE_TO_PROTO[State(s["state"])] for s in report["state_at"]}
    assert replayed == reported
    v3 = next(v for v in report["models"]["mnist"]["versions"] if v["version"] == 3)
    assert [s["state"] for s in v3["states"]][:3] == ["new", "loading", "error"]
    assert v3["load_errors"] and not v3["load_errors"][0]["will_retry"]
    assert [s["version"] for s in report["models"]["mnist"]["served"]] == [1, 2]

    # --at: which version, with which bytes, a request got at a moment: what the answers said.
    for moment, (version, fingerprint, _) in (
        (answered_by_v1[2], answered_by_v1),
        (settled_at, answered_by_v2),
    ):
        at = pyserving_replay(str(event_log), "--format=json", f"--at={moment:.6f}")
        assert at.returncode == 0, at.stderr
        serving = json.loads(at.stdout)["serving_at"]
        assert serving == [
            {"model": "mnist", "as": "latest", "version": version, "fingerprint": fingerprint}
        ]
    assert answered_by_v1[1] != answered_by_v2[1]

    # A hand-edited illegal transition: v1 goes straight from available to end.
    records = read_records(event_log)
    i = next(
        i
        for i, r in enumerate(records)
        if r["kind"] == "transition" and r["version"] == 1 and r["dst"] == "unloading"
    )
    records[i] = {**records[i], "dst": "end", "trigger": "unload_finished"}
    write_records(event_log, records)
    tampered = pyserving_replay(str(event_log))
    assert tampered.returncode == 1
    assert f"DIVERGENCE at seq {records[i]['seq']} (illegal)" in tampered.stdout


def test_sigkill_torn_line_and_restart_replay(
    trained_models: TrainedModels, start_server, tmp_path: Path
) -> None:
    watched = tmp_path / "monitored"
    event_log = tmp_path / "events.jsonl"
    trained_models.copy_version(1, watched)
    flags = ("--model_name=mnist", f"--model_base_path={watched}", f"--event_log={event_log}")
    first = start_server(*flags, *FAST_FLAGS)
    first.wait_serving()
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(30)
    with open(event_log, "ab") as f:  # what a kill in the middle of a write leaves
        f.write(b'{"seq":999999,"time":1.0,"kind":"transition","model":"mni')

    cut = pyserving_replay(str(event_log))
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert "VERIFIED" in cut.stdout and "undecodable" in cut.stdout
    assert "no clean stop recorded" in cut.stdout

    second = start_server(*flags, *FAST_FLAGS)
    second.wait_serving()
    assert second.stop() == 0
    both = pyserving_replay(str(event_log), "--format=json")
    assert both.returncode == 0, both.stdout + both.stderr
    report = json.loads(both.stdout)
    assert report["verified"] and len(report["runs"]) == 2
    assert [run["clean_stop"] for run in report["runs"]] == [False, True]
    assert report["left_unsettled_by_restart"] == [
        {"model": "mnist", "version": 1, "run": 1, "state": "available"}
    ]
    assert len(report["skipped_lines"]) == 1
