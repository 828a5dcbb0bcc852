"""Promotion gates against a real server and real SavedModels: each model has a version 1
serving under label `stable`, and a version 2 the config then points `stable` at (the
reload RPC). Gated, the label moves only if version 2 answers like version 1:

- `renamed` (output `y` is `z`), `dtype` (float64), `off` (answers beyond the tolerance)
  and `slow` (a p99 beyond its bound) fail, and `stable` stays on version 1;
- `good` (answers within the tolerance) passes, and `stable` moves to version 2.

Then the polled config file points `stable` back at version 1: `good`'s move back is
gated too (and passes). Requests naming `stable` were answered by version 1 while
`slow`'s gate ran (seen in the event log's order, not timed); the verdicts are event-log
lines, counters and log lines; `pyserving replay` shows them and fails on a log where a
label moved without a passing verdict; `pyserving compare` exits 1 on an incompatible
pair and 0 on a compatible one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import tensorflow as tf

from tests.util.metrics import sample_value
from tests.util.processes import QUIET_ENV, ROOT, ServerProcess, free_port
from tests.util.promotion_models import Scaler, events, export, predict, reload, write_requests
from tests.util.workers import both_modes

GATED = ("renamed", "dtype", "off", "slow", "good")
FAILING = ("renamed", "dtype", "off", "slow")


VERSION_2 = {
    "renamed": lambda: Scaler(2.0, output="z"),
    "dtype": lambda: Scaler(2.0, dtype=tf.float64),
    "off": lambda: Scaler(2.5),
    "slow": lambda: Scaler(2.0, work=12),
    "good": lambda: Scaler(2.0001),
}


@dataclass
class Models:
    root: Path
    requests: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("gated")
    for name, make in VERSION_2.items():
        export(root / name / "1", Scaler(2.0))
        export(root / name / "2", make())
    return Models(root, write_requests(root / "requests.tfrecord", 24))


def config(root: Path, stable: int) -> str:
    entries = "".join(
        f"config {{ name: '{name}' base_path: '{root / name}' model_platform: 'tensorflow' "
        "model_version_policy { specific { versions: 1 versions: 2 } } "
        f"version_labels {{ key: 'stable' value: {stable} }} }} "
        for name in GATED
    )
    return f"model_config_list {{ {entries} }}"


def gates_file(path: Path, requests: Path) -> Path:
    lines = []
    for name in GATED:
        lines += [
            "[[gate]]",
            f'model = "{name}"',
            'label = "stable"',
            f'requests = ["{requests}"]',
            "max_requests = 24",
            "max_abs_diff = 1e-3",
            "time_bound_seconds = 120",
        ]
        if name == "slow":
            lines.append("p99_ratio = 5")
        if name == "good":
            lines.append("p99_ratio = 1000  # timed, but never the reason it fails here")
    path.write_text("\n".join(lines) + "\n")
    return path


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pyserving", "replay", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=QUIET_ENV)


@both_modes
def test_gated_labels_move_only_after_their_gates_pass(
    models: Models, tmp_path: Path, workers: int
) -> None:
    config_file = tmp_path / "models.config"
    config_file.write_text(config(models.root, 1))
    event_log = tmp_path / "events.jsonl"
    rest_port = free_port()
    server = ServerProcess(
        [
            f"--model_config_file={config_file}",
            f"--promotion_gates_file={gates_file(tmp_path / 'gates.toml', models.requests)}",
            f"--event_log={event_log}",
            f"--rest_api_port={rest_port}",
            "--num_load_threads=1",
            "--model_config_file_poll_wait_seconds=0.2",
        ],
        tmp_path / "server.log",
        workers=workers,
    )
    try:
        server.wait_serving(timeout=120)
        assert predict(server, "slow", label="stable").model_spec.version.value == 1
        reload(server, config(models.root, 2))

        # While slow's gate runs, `stable` keeps answering, with version 1.
        during = 0
        while True:
            answer = predict(server, "slow", label="stable")
            recorded = [e for e in events(event_log) if e.get("model") == "slow"]
            kinds = [e["kind"] for e in recorded]
            if "promotion_verdict" in kinds:
                break
            assert "promotion_requested" in kinds
            assert answer.model_spec.version.value == 1
            during += 1
        assert during >= 1, "no request was answered while the gate ran"

        def verdicts() -> dict[str, dict]:
            return {e["model"]: e for e in events(event_log) if e["kind"] == "promotion_verdict"}

        server.wait_for(lambda: set(verdicts()) == set(GATED), 180, "every model's verdict")
        found = verdicts()
        for name in FAILING:
            assert not found[name]["passed"], found[name]
            assert predict(server, name, label="stable").model_spec.version.value == 1
            assert predict(server, name, version=2).model_spec.version.value == 2  # still serves
        assert found["good"]["passed"], found["good"]
        assert predict(server, "good", label="stable").model_spec.version.value == 2

        gates = {name: {g["gate"]: g for g in found[name]["gates"]} for name in GATED}
        assert "'y' is missing" in gates["renamed"]["signature"]["reason"]
        assert "float64" in gates["dtype"]["signature"]["reason"]
        assert not gates["off"]["outputs"]["passed"]
        assert gates["off"]["outputs"]["figures"]["y.max_abs_diff"] == pytest.approx(0.5)
        assert gates["slow"]["outputs"]["passed"]
        assert not gates["slow"]["latency"]["passed"]
        assert gates["slow"]["latency"]["figures"]["ratio"] > 5
        assert gates["good"]["outputs"]["figures"]["requests"] == 24
        assert gates["good"]["outputs"]["figures"]["y.max_abs_diff"] < 1e-3

        # A counter by verdict, and a log line that says why.
        url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        name = "pyserving_promotion_verdicts_total"
        assert (
            sample_value(text, name, {"model": "good", "label": "stable", "verdict": "passed"}) == 1
        )
        assert (
            sample_value(text, name, {"model": "off", "label": "stable", "verdict": "failed"}) == 1
        )
        assert (
            sample_value(text, name, {"model": "off", "label": "stable", "verdict": "passed"}) == 0
        )
        lines = [
            json.loads(line)
            for line in server.log_text().splitlines()
            if '"promotion_verdict"' in line
        ]
        off_line = next(x for x in lines if x.get("model") == "off")
        assert off_line["verdict"] == "failed" and "max_abs_diff 0.5" in off_line["reason"]
        assert off_line["gates"]["outputs"]["y.max_abs_diff"] == pytest.approx(0.5)

        # The polled file is another writer of labels: its move back is gated the same way.
        config_file.write_text(config(models.root, 1) + "# rolled back\n")  # an edit: new text
        server.wait_for(
            lambda: (
                [
                    e["to_version"]
                    for e in events(event_log)
                    if e["kind"] == "promotion_verdict" and e["model"] == "good"
                ]
                == [2, 1]
            ),
            60,
            "good's second verdict",
        )
        assert predict(server, "good", label="stable").model_spec.version.value == 1
        assert predict(server, "off", label="stable").model_spec.version.value == 1
    finally:
        assert server.stop() == 0

    # Replay verifies the log and shows each verdict.
    shown = replay(str(event_log))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "promotion verdicts:" in shown.stdout
    for name in FAILING:
        assert f"{name} label 'stable': v1 -> v2  FAILED, label stayed" in shown.stdout
    assert "good label 'stable': v1 -> v2  PASSED, label moved" in shown.stdout
    as_json = json.loads(replay(str(event_log), "--format=json", "--model=off").stdout)
    (off,) = as_json["models"]["off"]["promotion_verdicts"]
    assert (off["passed"], off["from_version"], off["to_version"]) == (False, 1, 2)
    assert set(as_json["models"]) == {"off"}

    # A log in which good's label moved without a passing verdict does not verify.
    forged = tmp_path / "forged.jsonl"
    records = []
    for line in event_log.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "promotion_verdict" and record["model"] == "good":
            record["passed"] = False
        records.append(json.dumps(record))
    forged.write_text("\n".join(records) + "\n")
    caught = replay(str(forged))
    assert caught.returncode == 1, caught.stdout
    assert "(ungated)" in caught.stdout and "good label 'stable': 1 -> 2" in caught.stdout


def compare(old: Path, new: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pyserving", "compare", str(old), str(new), *flags]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=QUIET_ENV, timeout=300
    )


def test_compare_exits_non_zero_on_an_incompatible_pair(models: Models) -> None:
    renamed = compare(models.root / "renamed" / "1", models.root / "renamed" / "2")
    assert renamed.returncode == 1, renamed.stdout + renamed.stderr
    assert "signature  FAIL" in renamed.stdout and "'y' is missing" in renamed.stdout
    good = compare(
        models.root / "good" / "1",
        models.root / "good" / "2",
        f"--requests={models.requests}",
        "--max_abs_diff=1e-3",
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "outputs    pass" in good.stdout and "requests=24" in good.stdout
    off = compare(
        models.root / "off" / "1", models.root / "off" / "2", f"--requests={models.requests}"
    )
    assert off.returncode == 1 and "y.max_abs_diff=0.5" in off.stdout, off.stdout
    ranked = compare(
        models.root / "off" / "1",
        models.root / "off" / "2",
        f"--requests={models.requests}",
        "--top_k=y=3",  # scaled by 2.5 rather than 2: the same order, so the same top 3
    )
    assert ranked.returncode == 0 and "y.top_3_agreement=1" in ranked.stdout, ranked.stdout


def test_a_bad_gates_file_stops_start_up_naming_the_file_and_field(tmp_path: Path) -> None:
    gates = tmp_path / "gates.toml"
    gates.write_text('[[gate]]\nmodel = "m"\nlabel = "stable"\np99_ratio = -1\n')
    command = [
        sys.executable,
        "-m",
        "pyserving",
        "serve",
        f"--model_base_path={tmp_path}",
        f"--promotion_gates_file={gates}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=QUIET_ENV, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{gates}: gate 1 (m/stable): 'p99_ratio' must be a number >= 0" in result.stderr
    assert "Traceback" not in result.stderr
